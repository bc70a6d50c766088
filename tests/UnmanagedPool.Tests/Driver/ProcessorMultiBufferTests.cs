using PacketProcessor.Drivers;
using PacketProcessor.Engine;
using PacketProcessor.Frames;
using PacketProcessor.Programs;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// The processor with an MTU: a frame longer than one RX buffer arrives over several descriptors and runs as a
/// multi-buffer XdpBuff (mvneta_swbm_rx_frame + mvneta_swbm_add_rx_fragment, xdp_buff_add_frag), programs see its
/// whole length (xdp_get_buff_len), and drop (mvneta_xdp_put_buff), tx (xdp_convert_buff_to_frame then
/// xdp_return_frame_rx_napi), redirect (xdp_return_frame_bulk) and pass (xdp_build_skb_from_buff) give back
/// every fragment.
/// </summary>
public class ProcessorMultiBufferTests
{
    private static ProcessorResult RunFor(ProcessorOptions options, int milliseconds = 150)
    {
        options.Duration = TimeSpan.FromMilliseconds(milliseconds);
        using var processor = new Processor(options);
        return processor.Run();
    }

    public static IEnumerable<object[]> Combinations()
    {
        foreach (RxBufferKind rx in new[] { RxBufferKind.Page, RxBufferKind.Half, RxBufferKind.Quarter })
            foreach (ProgramKind program in new[] { ProgramKind.Drop, ProgramKind.Count, ProgramKind.Redirect, ProgramKind.L2Fwd })
                yield return [rx, program];
    }

    /// <summary>Descriptors a 9000-byte frame spans: the head holds buffer - headroom - shared info, each fragment buffer - headroom.</summary>
    private static int Segments(int bufferSize, int frame)
    {
        int capacity = bufferSize - RxBuf.Headroom;
        int head = capacity - XdpBuff.SharedInfoSize;
        return frame <= capacity ? 1 : 1 + (frame - head + capacity - 1) / capacity;
    }

    [Theory]
    [MemberData(nameof(Combinations))]
    public void Jumbo_frames_account_for_every_frame_and_every_page_and_fragment_comes_back(RxBufferKind rx, ProgramKind program)
    {
        int queues = program == ProgramKind.Redirect ? 2 : 1;
        var options = new ProcessorOptions
        {
            RxBuffer = rx, Program = program, Queues = queues, Mtu = 9000, Mix = SizeMix.TryParse("64:1,9000:1", out SizeMix? mix, out _) ? mix! : null!,
        };
        ProcessorResult r = RunFor(options);
        Assert.True(r.RxPackets > 100, $"{r.RxPackets} frames");
        foreach (QueueResult q in r.Queues)
        {
            long verdicts = q.Drop + q.Aborted + q.Pass + q.PassBacklogDrops + q.Tx + q.TxErrors + q.Redirect + q.RedirectErrors;
            Assert.Equal(q.RxPackets, verdicts);
            Assert.Equal(0, q.Aborted); // count parses the whole 9000 B frame: its IP length is checked against xdp_get_buff_len
            Assert.Equal(0, q.InFlight);
            PagePoolStats s = Assert.NotNull(q.Pool);
            Assert.Equal(s.Hold, s.Release);
        }
        if (program == ProgramKind.Count)
            Assert.Equal(r.Queues.Sum(q => q.Pass), r.Matched);
        Assert.Equal(0, r.InFlight);
        // Half the frames take one buffer, half span Segments(...) buffers.
        int pieces = rx.PiecesPerPage();
        double expected = (1 + Segments(4096 / pieces, 9000)) / 2.0 / pieces;
        Assert.InRange(r.PagesPerFrame, expected - 0.1, expected + 0.25);
        Assert.Equal(0, r.AllocatedBytes);
    }

    [Fact]
    public void A_poll_receives_each_9000_byte_frame_over_three_page_buffers_and_the_program_sees_9000_bytes()
    {
        var nic = new SyntheticNic(new FrameGenerator(SizeMix.Fixed(9000)), 0);
        var queue = new RxQueue<PagePoolBuffers, CountProgram>(0, 1, 64, nic, new CountProgram(0)) { Mtu = 9000 };
        queue.Start([queue]);
        PagePool pool = queue.Pool!;
        Assert.Equal(3, Segments(4096, 9000));
        // 64 posted descriptors: 21 frames of 3 (a 22nd would need 3 more than the last one left).
        Assert.Equal(21, queue.Poll());
        Assert.Equal(21, queue.Counters.RxPackets);
        Assert.Equal(21 * 9000, queue.Counters.RxBytes);
        Assert.Equal(21, queue.Counters.Pass);
        Assert.Equal(21, queue.Matched); // well-formed UDP: the parser checked the IP length against the whole frame
        Assert.Equal(0, queue.Counters.Aborted);
        // Every passed packet holds its head and two fragments: 63 pages out with the worker.
        var packets = new List<Packet>();
        while (queue.PassRing.TryRead(out PassItem item))
            packets.Add(item.Packet!);
        Assert.Equal(21, packets.Count);
        Assert.All(packets, p => Assert.Equal(2, p.NrFrags));
        Assert.All(packets, p => Assert.Equal(9000, p.Length));
        Assert.All(packets, p => Assert.Equal(4096 - RxBuf.Headroom - XdpBuff.SharedInfoSize, p.Head.Length));
        // One descriptor left posted (the ring refills only a whole batch of 64) plus the packets' 63 pages.
        Assert.Equal(1 + 63, pool.InFlight - pool.GetStats().Pooled);
        foreach (Packet p in packets)
            p.Free();
        Assert.Equal(1, pool.InFlight - pool.GetStats().Pooled);
        // One descriptor cannot hold a 3-buffer frame: the poll completes nothing and refills the ring.
        Assert.Equal(0, queue.Poll());
        Assert.Equal(1, queue.Counters.RxNoBuffers);
        Assert.Equal(64, pool.InFlight - pool.GetStats().Pooled);
        Assert.Equal(21, queue.Poll());
        while (queue.PassRing.TryRead(out PassItem item))
            item.Packet!.Free();
        queue.Stop();
        Assert.True(queue.PoolFreed);
        Assert.Equal(0, queue.InFlight);
    }

    [Fact]
    public void A_frame_longer_than_the_mtu_allows_counts_as_aborted_and_its_buffer_goes_back()
    {
        var nic = new SyntheticNic(new FrameGenerator(SizeMix.Fixed(9000)), 0);
        var queue = new RxQueue<PagePoolBuffers, DropProgram>(0, 1, 64, nic, new DropProgram()) { Mtu = 1500 };
        queue.Start([queue]);
        Assert.Equal(64, queue.Poll());
        Assert.Equal(64, queue.Counters.Aborted);
        Assert.Equal(0, queue.Counters.Drop);
        queue.Stop();
        Assert.True(queue.PoolFreed);
    }

    [Fact]
    public void Without_an_mtu_a_jumbo_frame_is_truncated_as_before()
    {
        ProcessorResult r = RunFor(new ProcessorOptions { Mix = SizeMix.Fixed(9000) }, 50);
        Assert.Equal(r.RxPackets, r.Queues.Sum(q => q.Aborted));
        Assert.Equal(0, r.InFlight);
    }

    [Theory]
    [InlineData(67, BufferPoolKind.PagePool, DriverKind.Synthetic, true, "--mtu must be")]
    [InlineData(9001, BufferPoolKind.PagePool, DriverKind.Synthetic, true, "--mtu must be")]
    [InlineData(9000, BufferPoolKind.ArrayPool, DriverKind.Synthetic, true, "--pool pagepool")]
    [InlineData(9000, BufferPoolKind.PagePool, DriverKind.AfXdp, true, "synthetic and afpacket")]
    [InlineData(9000, BufferPoolKind.PagePool, DriverKind.Synthetic, false, "--xdp-frames")]
    public void The_options_refuse_an_mtu_the_queues_cannot_honour(int mtu, BufferPoolKind pool, DriverKind driver, bool xdpFrames, string message)
    {
        var options = new ProcessorOptions { Mtu = mtu, Pool = pool, Driver = driver, Interface = "lo", XdpFrames = xdpFrames };
        Assert.Contains(message, options.Validate());
        options.Mtu = null;
        Assert.Null(options.Validate());
    }

    [Fact]
    public void The_command_line_takes_mtu_and_jumbo_sizes()
    {
        var result = global::PacketProcessor.Program.BuildCommand().Parse(["--mtu", "9000", "--mix", "64:1,9000:1"]);
        Assert.Empty(result.Errors);
        Assert.Empty(global::PacketProcessor.Program.BuildCommand().Parse(["--size", "9018"]).Errors);
        Assert.NotEmpty(global::PacketProcessor.Program.BuildCommand().Parse(["--size", "9019"]).Errors);
    }

    [Fact]
    public void The_parser_checks_ip_and_udp_lengths_against_the_whole_frame_and_reads_headers_from_the_head()
    {
        byte[] frame = new byte[9000];
        FrameBuilder.WriteUdp(frame, 9000, 1, 2, 3, 4, 5, 4791);
        ReadOnlySpan<byte> head = frame.AsSpan(0, 3552);
        Assert.Equal(ParseResult.Malformed, FrameParser.ParseUdp(head, out _)); // the head alone: IP length past it
        Assert.Equal(ParseResult.Udp, FrameParser.ParseUdp(head, 9000, out ushort port));
        Assert.Equal(4791, port);
        Assert.Equal(ParseResult.Malformed, FrameParser.ParseUdp(head, 8999, out _));
        // Headers must lie in the head: a 40-byte head cuts the UDP header.
        Assert.Equal(ParseResult.Malformed, FrameParser.ParseUdp(frame.AsSpan(0, 40), 9000, out _));
    }
}
