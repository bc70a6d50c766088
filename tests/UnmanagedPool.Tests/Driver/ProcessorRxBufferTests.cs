using PacketProcessor.Drivers;
using PacketProcessor.Engine;
using PacketProcessor.Frames;
using PacketProcessor.Programs;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// The processor receiving into pieces of pages the queue splits itself (page_pool_fragment_netmem, the drain with
/// page_pool_unref_netmem, as mlx5e_page_alloc_fragmented / mlx5e_page_release_fragmented), and syncing each
/// received frame for the CPU (page_pool_dma_sync_for_cpu) when the pool maps.
/// </summary>
public unsafe class ProcessorRxBufferTests
{
    private static ProcessorResult RunFor(ProcessorOptions options, int milliseconds = 150)
    {
        options.Duration = TimeSpan.FromMilliseconds(milliseconds);
        using var processor = new Processor(options);
        return processor.Run();
    }

    public static IEnumerable<object[]> Combinations()
    {
        foreach (RxBufferKind rx in new[] { RxBufferKind.Half, RxBufferKind.Quarter })
            foreach (ProgramKind program in new[] { ProgramKind.Drop, ProgramKind.Count, ProgramKind.Redirect, ProgramKind.L2Fwd })
                foreach (bool xdpFrames in new[] { true, false })
                    foreach (bool dmaMap in new[] { false, true })
                        yield return [rx, program, xdpFrames, dmaMap];
    }

    [Theory]
    [MemberData(nameof(Combinations))]
    public void Split_pages_account_for_every_frame_and_every_page_comes_back(RxBufferKind rx, ProgramKind program, bool xdpFrames, bool dmaMap)
    {
        int queues = program == ProgramKind.Redirect ? 2 : 1;
        var options = new ProcessorOptions
        {
            RxBuffer = rx, Program = program, Queues = queues, XdpFrames = xdpFrames, DmaMap = dmaMap, Mix = SizeMix.Imix,
        };
        ProcessorResult r = RunFor(options);
        Assert.True(r.RxPackets > 0);
        int pieces = rx.PiecesPerPage();
        foreach (QueueResult q in r.Queues)
        {
            long verdicts = q.Drop + q.Aborted + q.Pass + q.PassBacklogDrops + q.Tx + q.TxErrors + q.Redirect + q.RedirectErrors;
            Assert.Equal(q.RxPackets, verdicts);
            Assert.Equal(0, q.InFlight);
            PagePoolStats s = Assert.NotNull(q.Pool);
            Assert.Equal(s.Hold, s.Release);
            // Every completed descriptor was a piece; at exit at most a ring of pieces was posted and not
            // completed, and at most one page was partly cut.
            Assert.True(q.RxPages * pieces >= q.RxPackets, $"{q.RxPages} pages for {q.RxPackets} frames");
            Assert.True(q.RxPages * pieces <= q.RxPackets + options.RingSize + pieces, $"{q.RxPages} pages for {q.RxPackets} frames");
        }
        Assert.Equal(0, r.InFlight);
        Assert.InRange(r.PagesPerFrame, 1.0 / pieces, 1.0 / pieces + 0.1);
        // A piece holds the headroom and (buffer - headroom) bytes of frame: IMIX's 1518 B frames do not fit a
        // quarter (768 B), and are counted as truncated.
        long aborted = r.Queues.Sum(q => q.Aborted);
        if (rx == RxBufferKind.Half)
            Assert.Equal(0, aborted);
        else
            Assert.InRange(aborted, r.RxPackets / 24, r.RxPackets / 6);
    }

    [Fact]
    public void A_queue_splits_each_page_into_the_pieces_it_posts_and_the_last_piece_recycles_it()
    {
        var nic = new SyntheticNic(new FrameGenerator(SizeMix.Fixed(64)), 0);
        var queue = new RxQueue<PagePoolBuffers, DropProgram>(0, 1, 64, nic, new DropProgram()) { RxPiecesPerPage = 4 };
        queue.Start([queue]);
        PagePool pool = queue.Pool!;
        // 64 descriptors, 4 per page: 16 pages, each drained to exactly the 4 pieces posted on it.
        Assert.Equal(16, queue.Counters.RxPages);
        Assert.Equal(16, pool.InFlight - pool.GetStats().Pooled);
        Assert.Equal(64 - 16, pool.GetStats().Pooled);
        Assert.Equal(64, queue.Poll());
        Assert.Equal(64, queue.Counters.Drop);
        // Every piece dropped went back; the refill cut 16 pages again, from the pages just recycled.
        Assert.Equal(32, queue.Counters.RxPages);
        Assert.Equal(64, pool.InFlight);
        queue.Stop();
        Assert.True(queue.PoolFreed);
        Assert.Equal(0, queue.InFlight);
    }

    [Fact]
    public void With_mapped_pools_each_received_frame_is_synced_for_the_cpu_at_its_piece()
    {
        var nic = new SyntheticNic(new FrameGenerator(SizeMix.Fixed(100)), 0);
        var mapper = new CountingDmaMapper();
        var queue = new RxQueue<PagePoolBuffers, DropProgram>(0, 1, 64, nic, new DropProgram()) { RxPiecesPerPage = 2, DmaMap = true, DmaMapper = mapper };
        queue.Start([queue]);
        PagePool pool = queue.Pool!;
        Assert.Equal(64, pool.DmaMappedPages); // one bulk of 64 pages mapped by the first refill
        Assert.Equal(64, mapper.Maps);
        Assert.Equal(64, queue.Poll());
        // One sync per frame, at the frame in its piece: dma + piece offset + headroom, the frame's length.
        Assert.Equal(64, mapper.SyncsForCpu.Count);
        Assert.All(mapper.SyncsForCpu, s => Assert.Equal((nuint)100, s.Size));
        Assert.All(mapper.SyncsForCpu, s => Assert.Equal(DmaDirection.FromDevice, s.Dir));
        var offsets = mapper.SyncsForCpu.Select(s => (s.Dma - CountingDmaMapper.DmaBase) % 4096).ToList();
        Assert.Equal(32, offsets.Count(o => o == (ulong)RxBuf.Headroom));
        Assert.Equal(32, offsets.Count(o => o == 2048 + (ulong)RxBuf.Headroom));
        queue.Stop();
        mapper.AssertEveryMapUnmappedOnce();
        Assert.True(queue.PoolFreed);
        Assert.Equal(0, pool.DmaMappedPages);
    }

    [Theory]
    [InlineData("page", RxBufferKind.Page)]
    [InlineData("half", RxBufferKind.Half)]
    [InlineData("quarter", RxBufferKind.Quarter)]
    public void The_command_line_takes_rx_buffer_page_half_or_quarter(string value, RxBufferKind expected)
    {
        var result = global::PacketProcessor.Program.BuildCommand().Parse(["--rx-buffer", value]);
        Assert.Empty(result.Errors);
        Assert.Equal(expected.Name(), value);
        Assert.Equal(expected switch { RxBufferKind.Half => 2, RxBufferKind.Quarter => 4, _ => 1 }, expected.PiecesPerPage());
        Assert.NotEmpty(global::PacketProcessor.Program.BuildCommand().Parse(["--rx-buffer", "eighth"]).Errors);
    }

    [Fact]
    public void Split_buffers_and_dma_mapping_need_page_pool_buffers()
    {
        Assert.Contains("--rx-buffer", new ProcessorOptions { RxBuffer = RxBufferKind.Half, Pool = BufferPoolKind.ArrayPool }.Validate());
        Assert.Contains("--dma-map", new ProcessorOptions { DmaMap = true, Pool = BufferPoolKind.ArrayPool }.Validate());
        Assert.Null(new ProcessorOptions { RxBuffer = RxBufferKind.Quarter, DmaMap = true }.Validate());
    }
}
