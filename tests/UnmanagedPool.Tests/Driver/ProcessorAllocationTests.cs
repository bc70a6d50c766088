using PacketProcessor.Engine;
using PacketProcessor.Frames;
using PacketProcessor.Programs;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// The processor's steady state allocates nothing managed: the queue threads and the worker, each measured over
/// its own running window, for drop, count and redirect on whole, half and quarter pages, one and two queues, with
/// and without jumbo multi-buffer frames. A pool whose recycle ring overflows (a jumbo pass backlog coming back at
/// once) puts the pages on its queue's page reserve and takes them back from there.
/// </summary>
public class ProcessorAllocationTests
{
    public static IEnumerable<object[]> Combinations()
    {
        foreach (ProgramKind program in new[] { ProgramKind.Drop, ProgramKind.Count, ProgramKind.Redirect })
            foreach (RxBufferKind rx in new[] { RxBufferKind.Page, RxBufferKind.Half, RxBufferKind.Quarter })
                foreach (int queues in new[] { 1, 2 })
                    foreach (bool jumbo in new[] { false, true })
                        yield return [program, rx, queues, jumbo];
    }

    [Theory]
    [MemberData(nameof(Combinations))]
    public void The_packet_path_allocates_no_managed_bytes(ProgramKind program, RxBufferKind rx, int queues, bool jumbo)
    {
        var options = new ProcessorOptions
        {
            Program = program,
            RxBuffer = rx,
            Queues = queues,
            Duration = TimeSpan.FromMilliseconds(200),
        };
        if (jumbo)
        {
            options.Mtu = 9000;
            options.Mix = SizeMix.TryParse("64:1,9000:1", out SizeMix? mix, out _) ? mix! : null!;
        }
        using var processor = new Processor(options);
        ProcessorResult r = processor.Run();
        Assert.True(r.RxPackets > 0);
        Assert.Equal(0, r.InFlight);
        Assert.True(r.AllocatedBytes == 0, $"{r.AllocatedBytes} managed bytes, worker {r.WorkerAllocatedBytes}; " + string.Join("; ", r.Queues.Select(q =>
            $"queue {q.Index}: {q.AllocatedBytes} bytes, hold {q.Pool?.Hold}, alloc slow {q.Pool?.AllocSlow}, ring full {q.Pool?.RecycleRingFull}, alloc failed {q.Pool?.AllocFailed}")));
    }

    [Fact]
    public void A_pool_over_a_page_reserve_overflows_its_ring_and_refills_without_allocating()
    {
        var reserve = new PageReserve(512);
        Assert.Equal(512, reserve.Free);
        var pool = new PagePool(new PagePoolOptions { PoolSize = 64, MemoryProvider = reserve });
        PagePoolConsumer consumer = pool.BindConsumer();
        var pages = new UnmanagedPool.Native.NetMemRef[400];
        void Cycle()
        {
            for (int i = 0; i < pages.Length; i++)
                Assert.False((pages[i] = consumer.AllocPage()).IsNull);
            // 400 back at once: the alloc cache, the 64-slot ring and the consumer's put buffer fill, the rest goes
            // back to the reserve.
            foreach (var page in pages)
                consumer.RecycleDirect(page);
        }
        Cycle();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int k = 0; k < 3; k++)
            Cycle();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        PagePoolStats s = pool.GetStats();
        Assert.True(s.RecycleRingFull >= 4 * (400 - PagePool.AllocCacheSize - 64 - PagePool.PutBufferSize), $"ring full {s.RecycleRingFull}");
        // Every page the pool does not hold is back on the reserve.
        Assert.Equal(512 - s.Pooled, reserve.Free);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, reserve.Free); // destroyed: the pages went back to the provider with the pool
    }
}
