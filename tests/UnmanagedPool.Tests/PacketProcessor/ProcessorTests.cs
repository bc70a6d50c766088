using PacketProcessor.Engine;
using PacketProcessor.Frames;
using PacketProcessor.Programs;

namespace UnmanagedPool.Tests.PacketProcessor;

public class ProcessorTests
{
    private static ProcessorResult RunFor(ProcessorOptions options, int milliseconds = 150)
    {
        options.Duration = TimeSpan.FromMilliseconds(milliseconds);
        using var processor = new Processor(options);
        return processor.Run();
    }

    private static void AssertAccounted(ProcessorResult r)
    {
        foreach (QueueResult q in r.Queues)
        {
            long verdicts = q.Drop + q.Aborted + q.Pass + q.PassBacklogDrops + q.Tx + q.TxErrors + q.Redirect + q.RedirectErrors;
            Assert.Equal(q.RxPackets, verdicts);
            Assert.Equal(0, q.InFlight);
            if (q.Pool is { } s)
            {
                Assert.Equal(s.Hold, s.Release);
                Assert.Equal(0, s.InFlight);
            }
            else
            {
                Assert.Equal(q.ArraysRented, q.ArraysReturned);
            }
        }
        Assert.Equal(r.Queues.Sum(q => q.Redirect), r.Queues.Sum(q => q.RedirectTx));
        Assert.Equal(0, r.InFlight);
    }

    public static IEnumerable<object[]> Combinations()
    {
        foreach (ProgramKind program in Enum.GetValues<ProgramKind>())
            foreach (BufferPoolKind pool in Enum.GetValues<BufferPoolKind>())
                foreach (int queues in new[] { 1, 2 })
                    yield return [program, pool, queues];
    }

    [Theory]
    [MemberData(nameof(Combinations))]
    public void Every_program_on_either_pool_accounts_for_every_frame_and_gives_every_buffer_back(ProgramKind program, BufferPoolKind pool, int queues)
    {
        ProcessorResult r = RunFor(new ProcessorOptions { Program = program, Pool = pool, Queues = queues, Port = 5000, Mix = SizeMix.Imix });
        Assert.True(r.RxPackets > 0);
        AssertAccounted(r);
        switch (program)
        {
            case ProgramKind.Drop:
                Assert.Equal(r.RxPackets, r.Queues.Sum(q => q.Drop));
                break;
            case ProgramKind.L2Fwd:
                Assert.Equal(r.RxPackets, r.Queues.Sum(q => q.Tx));
                break;
            case ProgramKind.Redirect:
                Assert.Equal(r.RxPackets, r.Queues.Sum(q => q.Redirect));
                break;
            case ProgramKind.UdpFilter:
                // The generator spreads frames over four ports in turn: about a quarter pass.
                Assert.InRange(r.Matched, r.RxPackets / 5, r.RxPackets / 3);
                break;
            case ProgramKind.Count:
                Assert.Equal(r.RxPackets, r.Queues.Sum(q => q.Pass + q.PassBacklogDrops));
                break;
        }
    }

    [Fact]
    public void Malformed_synthetic_frames_are_counted_as_aborted_and_their_pages_come_back()
    {
        ProcessorResult r = RunFor(new ProcessorOptions { Program = ProgramKind.UdpFilter, Port = 5000, MalformedPerMille = 100 });
        long aborted = r.Queues.Sum(q => q.Aborted);
        Assert.InRange(aborted, r.RxPackets / 20, r.RxPackets / 5);
        AssertAccounted(r);
    }

    [Fact]
    public void Redirect_without_xdp_frames_returns_bare_pages_to_their_pools()
    {
        ProcessorResult r = RunFor(new ProcessorOptions { Program = ProgramKind.Redirect, Queues = 2, XdpFrames = false });
        Assert.True(r.Queues.All(q => q.Redirect > 0 && q.RedirectTx > 0));
        Assert.True(r.Queues.All(q => q.Pool!.Value.RecycleRing > 0));
        AssertAccounted(r);
    }

    [Fact]
    public void A_cancelled_run_stops_early_reports_interrupted_and_leaves_nothing_in_flight()
    {
        var options = new ProcessorOptions { Program = ProgramKind.Count, Queues = 2, Duration = TimeSpan.FromMinutes(5) };
        using var processor = new Processor(options);
        using var cts = new CancellationTokenSource();
        ProcessorResult? result = null;
        var runner = new Thread(() => result = processor.Run(cts.Token));
        runner.Start();
        Assert.True(processor.Started.WaitOne(TimeSpan.FromSeconds(30)));
        Thread.Sleep(100);
        cts.Cancel();
        Assert.True(runner.Join(TimeSpan.FromSeconds(30)));
        Assert.NotNull(result);
        Assert.True(result!.Interrupted);
        Assert.True(result.Elapsed < TimeSpan.FromMinutes(1));
        AssertAccounted(result);
    }

    [Fact]
    public void Progress_is_reported_once_per_elapsed_second_with_growing_totals()
    {
        var samples = new List<ProgressSample>();
        var options = new ProcessorOptions { Duration = TimeSpan.FromMilliseconds(2300) };
        using var processor = new Processor(options);
        ProcessorResult r = processor.Run(progress: samples.Add);
        // One sample per whole second before the end (a stalled machine may skip the last one).
        Assert.InRange(samples.Count, 1, 2);
        Assert.All(samples, s => Assert.True(s.RxPackets > 0 && s.Elapsed >= TimeSpan.FromSeconds(1)));
        Assert.True(samples[^1].RxPackets >= samples[0].RxPackets);
        // Every frame is counted as received before its drop: a sample never shows more drops than frames.
        Assert.All(samples, s => Assert.True(s.Drops <= s.RxPackets, $"drops {s.Drops} > rx {s.RxPackets}"));
        AssertAccounted(r);
    }

    [Theory]
    [InlineData(0, "--queues")]
    [InlineData(65, "--queues")]
    public void Invalid_options_are_refused_with_the_option_named(int queues, string named)
    {
        var e = Assert.Throws<ArgumentException>(() => new Processor(new ProcessorOptions { Queues = queues }));
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void Udp_filter_without_a_port_is_refused()
    {
        Assert.Contains("--port", new ProcessorOptions { Program = ProgramKind.UdpFilter }.Validate());
    }
}
