using System.Diagnostics;
using PacketProcessor.Drivers;
using PacketProcessor.Engine;
using PacketProcessor.Programs;
using UnmanagedPool.Tests.AfXdp;

namespace UnmanagedPool.Tests.PacketProcessor;

/// <summary>
/// The processor's afxdp driver on a veth pair the test creates (peer end in the test's own namespace): frames
/// sent from the namespace are counted, forwarded or redirected in UMEM pool pages, every page goes back to its
/// pool, and nothing stays attached to the interface.
/// </summary>
[Collection(nameof(XdpCollection))]
public class AfXdpIntegrationTests
{
    private const int Count = 2000;
    private const ushort Port = 47_124;

    [RootNetnsFact]
    public void Count_over_afxdp_counts_every_datagram_with_no_kernel_drop_and_leaves_nothing_behind()
    {
        // trafgen where .ci/run installed it, otherwise the C# sender.
        CountsEverything(UdpSender.Auto, IsolatedVeth.Trafgen != null ? UdpSender.Trafgen : UdpSender.CSharp);
    }

    [RootNetnsFact]
    public void Count_over_afxdp_counts_every_datagram_of_the_CSharp_sender_with_no_kernel_drop()
    {
        CountsEverything(UdpSender.CSharp, UdpSender.CSharp);
    }

    private static void CountsEverything(UdpSender sender, UdpSender expected)
    {
        using var veth = new IsolatedVeth(addresses: true);
        ProcessorResult result = RunWhileSending(veth, ProgramKind.Count, queues: 1, r => r.Matched >= Count, out string? note, sender, out UdpSender used);
        Assert.Equal(expected, used);
        Assert.Contains("copy mode", note);
        Assert.Equal(Count, result.Matched);
        Assert.Equal(0, result.KernelDrops);
        AssertEverythingBack(result);
        Assert.False(veth.HostHasXdp());
    }

    [RootNetnsFact]
    public void L2fwd_over_afxdp_transmits_every_frame_back_and_every_page_returns_through_the_completion_ring()
    {
        using var veth = new IsolatedVeth(addresses: true);
        ProcessorResult result = RunWhileSending(veth, ProgramKind.L2Fwd, queues: 1, r => r.RxPackets >= Count, out _, UdpSender.Auto, out _);
        Assert.True(result.RxPackets >= Count);
        Assert.Equal(result.RxPackets, result.Queues.Sum(q => q.Tx));
        Assert.Equal(0, result.Queues.Sum(q => q.TxErrors));
        Assert.Equal(0, result.KernelDrops);
        AssertEverythingBack(result);
        Assert.False(veth.HostHasXdp());
    }

    [RootNetnsFact]
    public void Redirect_over_afxdp_transmits_every_frame_on_the_other_queue_and_returns_each_page_to_its_origin_pool()
    {
        using var veth = new IsolatedVeth(queues: 2, addresses: true);
        ProcessorResult result = RunWhileSending(veth, ProgramKind.Redirect, queues: 2, r => r.RxPackets >= Count, out _, UdpSender.Auto, out _);
        Assert.True(result.RxPackets >= Count);
        Assert.Equal(result.RxPackets, result.Queues.Sum(q => q.Redirect));
        Assert.Equal(result.RxPackets, result.Queues.Sum(q => q.RedirectTx));
        Assert.Equal(0, result.Queues.Sum(q => q.TxErrors + q.RedirectErrors));
        Assert.Equal(0, result.KernelDrops);
        AssertEverythingBack(result);
        Assert.False(veth.HostHasXdp());
    }

    [RootNetnsFact]
    public void Afxdp_errors_give_the_documented_exit_codes_and_attach_nothing()
    {
        using var veth = new IsolatedVeth();
        DriverException e = Assert.Throws<DriverException>(() => new Processor(Options("upx-missing0", ProgramKind.Drop, 1)));
        Assert.Equal(DriverException.NoInterface, e.ExitCode);
        e = Assert.Throws<DriverException>(() => new Processor(Options(veth.Host, ProgramKind.Drop, 2)));
        Assert.Equal(DriverException.NoSuchQueue, e.ExitCode);
        var zc = Options(veth.Host, ProgramKind.Drop, 1);
        zc.XdpMode = AfXdpMode.ZeroCopy;
        e = Assert.Throws<DriverException>(() => new Processor(zc));
        Assert.Equal(DriverException.NoXdp, e.ExitCode);
        using (new Processor(Options(veth.Host, ProgramKind.Drop, 1)))
        {
            e = Assert.Throws<DriverException>(() => new Processor(Options(veth.Host, ProgramKind.Drop, 1)));
            Assert.Equal(DriverException.Busy, e.ExitCode);
            Assert.True(veth.HostHasXdp());
        }
        Assert.False(veth.HostHasXdp());
    }

    [RootNetnsFact]
    public void The_program_is_detached_when_the_processor_stops_on_SIGTERM_and_when_it_is_killed()
    {
        using var veth = new IsolatedVeth();
        foreach (string signal in new[] { "TERM", "KILL" })
        {
            using var child = new ProcessorChild("--driver", "afxdp", "--interface", veth.Host, "--program", "drop", "--duration", "1m");
            Process p = child.Process;
            Assert.True(child.WaitForProgress(TimeSpan.FromSeconds(30)), $"No progress line: {child.Output}");
            Assert.True(veth.HostHasXdp());
            child.Signal(signal);
            Assert.True(p.WaitForExit(30_000), $"The processor did not exit on SIG{signal}.");
            p.WaitForExit();
            if (signal == "TERM")
            {
                Assert.Equal(0, p.ExitCode);
                Assert.Contains("InFlight 0 on every queue", child.Output);
            }
            // The link lives in a file descriptor: the kernel detaches the program when the process goes.
            var wait = Stopwatch.StartNew();
            while (veth.HostHasXdp() && wait.Elapsed < TimeSpan.FromSeconds(5))
                Thread.Sleep(50);
            Assert.False(veth.HostHasXdp(), $"An XDP program is still attached after SIG{signal}.");
        }
    }

    private static ProcessorOptions Options(string iface, ProgramKind program, int queues) => new()
    {
        Driver = DriverKind.AfXdp,
        Interface = iface,
        Queues = queues,
        Program = program,
        Port = Port,
        Duration = TimeSpan.FromSeconds(30),
    };

    private static ProcessorResult RunWhileSending(IsolatedVeth veth, ProgramKind program, int queues, Func<Processor, bool> done, out string? note,
        UdpSender sender, out UdpSender used)
    {
        BackgroundProcessor run;
        var processor = new Processor(Options(veth.Host, program, queues));
        try
        {
            note = processor.DriverNote;
            run = BackgroundProcessor.Start(processor);
            Task<UdpSender> sending = veth.SendUdpAsync(Count, Port, sender);
            Assert.True(sending.Wait(TimeSpan.FromSeconds(30)), "The sender did not finish.");
            used = sending.GetAwaiter().GetResult();
            var wait = Stopwatch.StartNew();
            while (!done(processor) && wait.Elapsed < TimeSpan.FromSeconds(10))
                Thread.Sleep(20);
            run.Stop();
        }
        finally
        {
            processor.Dispose();
        }
        return run.Result;
    }

    private static void AssertEverythingBack(ProcessorResult result)
    {
        Assert.Equal(0, result.InFlight);
        Assert.All(result.Queues, q =>
        {
            Assert.Equal(0, q.InFlight);
            Assert.Equal(q.Pool!.Value.Hold, q.Pool.Value.Release);
            Assert.Equal(UnmanagedPool.Native.MemoryProviderKind.Umem, q.Pool.Value.MemoryProvider);
        });
    }
}
