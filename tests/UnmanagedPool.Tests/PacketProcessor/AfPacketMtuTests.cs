using System.Diagnostics;
using PacketProcessor.Drivers;
using PacketProcessor.Engine;
using PacketProcessor.Frames;
using PacketProcessor.Programs;
using UnmanagedPool.Tests.AfXdp;

namespace UnmanagedPool.Tests.PacketProcessor;

/// <summary>
/// Jumbo frames over AF_PACKET: with <c>--mtu</c> the afpacket driver scatters each frame over as many page
/// buffers as it needs and the queue runs it as a multi-buffer XdpBuff, as the synthetic NIC delivers them; an MTU
/// above the interface's is refused with a usage error naming the command that raises it.
/// </summary>
public class AfPacketMtuTests
{
    private const int Jumbo = 300;
    private const int Small = 300;
    private const int Middle = 100;     // 3600 bytes: past the head's room (3520), within one buffer (3840)
    private const ushort Port = 47_124;

    [RootNetnsFact]
    public void Count_over_afpacket_with_mtu_9000_receives_every_jumbo_and_small_frame_over_page_fragments()
    {
        using var veth = new IsolatedVeth();
        var options = new ProcessorOptions
        {
            Driver = DriverKind.AfPacket,
            Interface = veth.Host,
            Program = ProgramKind.Count,
            Port = Port,
            Mtu = 9000,
            Duration = TimeSpan.FromSeconds(20),
        };
        // The veth's MTU is 1500: the processor refuses to start and says how to raise it.
        var refused = Assert.Throws<DriverException>(() => new Processor(options));
        Assert.Equal(DriverException.Usage, refused.ExitCode);
        Assert.Contains($"ip link set {veth.Host} mtu 9000", refused.Message);

        AfPacketIntegrationTests.Ip($"link set {veth.Host} mtu 9000");
        AfPacketIntegrationTests.Ip($"netns exec {veth.Namespace} ip link set {veth.Peer} mtu 9000");
        using var processor = new Processor(options);
        var run = BackgroundProcessor.Start(processor);
        try
        {
            byte[] header = Convert.FromHexString(veth.HostMac.Replace(":", "", StringComparison.Ordinal));
            foreach (int length in new[] { 9000, 3600, 64 })
            {
                NetnsSender.SendRaw(veth.Namespace, veth.Peer, length switch { 9000 => Jumbo, 3600 => Middle, _ => Small }, length, (i, frame) =>
                {
                    FrameBuilder.WriteUdp(frame, length, 0, 0x02_00_00_00_00_01, 0x0a000002, 0x0a000001, 40_000, Port);
                    header.CopyTo(frame, 0);
                });
            }
            var wait = Stopwatch.StartNew();
            while (processor.Matched < Jumbo + Middle + Small && wait.Elapsed < TimeSpan.FromSeconds(10))
                Thread.Sleep(20);
        }
        finally
        {
            run.Stop();
        }
        ProcessorResult r = run.Result;
        QueueResult q = Assert.Single(r.Queues);
        Assert.Equal(Jumbo + Middle + Small, r.Matched);
        Assert.Equal(0, q.Aborted);
        Assert.Equal(0, q.KernelDrops);
        // Count checks each frame's IP length against its whole length (xdp_get_buff_len): every frame arrived whole.
        Assert.True(q.RxBytes >= (long)Jumbo * 9000 + (long)Middle * 3600 + (long)Small * 64, $"{q.RxBytes} bytes");
        Assert.Equal(0, r.InFlight);
        Assert.Equal(0, r.AllocatedBytes);
        Assert.Equal(q.Pool!.Value.Hold, q.Pool.Value.Release);
        // A 9000-byte frame spans three page buffers.
        Assert.True(r.PagesPerFrame > 1, $"{r.PagesPerFrame} pages per frame");
    }
}
