using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

/// <summary>
/// Sticky per-CPU cache ownership: a thread keeps the cache it acquired across puts (one atomic per batch, not
/// per put), and every drain (Dispose, UpdateNid, Trim, the consumer's steal) takes a held cache back from its
/// holder, alive, idle, busy or gone.
/// </summary>
[Collection(nameof(PoolTimingCollection))]
public unsafe class PerCpuCacheTests
{
    [Fact]
    public void A_thread_putting_one_page_at_a_time_acquires_a_cache_about_once_per_batch()
    {
        const int Pages = 4096;
        using var pool = new PagePool(new PagePoolOptions { PoolSize = 8192 });
        var held = new NetMemRef[Pages];
        for (int i = 0; i < Pages; i++)
            held[i] = pool.AllocPage();
        long before = pool.PerCpuSnapshot().Acquisitions;
        OtherThread.Run(() =>
        {
            foreach (NetMemRef p in held)
                pool.PutPage(p);
        });
        long acquisitions = pool.PerCpuSnapshot().Acquisitions - before;
        // One per call would be 4096. A thread re-acquires only when it finds at a flush (every 32 puts) that it
        // migrated, so the bound is one per batch plus the first.
        Assert.InRange(acquisitions, 1, Pages / PerCpuBatch + 1);
        var s = pool.GetStats();
        Assert.Equal(Pages, s.RecycleRing);
        Assert.Equal(s.InFlight, s.Pooled);
    }

    private const int PerCpuBatch = 32;

    [Fact]
    public void Dispose_revokes_the_cache_of_a_thread_that_holds_it_and_stays_alive()
    {
        var pool = new PagePool(new PagePoolOptions());
        var held = new NetMemRef[10];
        Assert.Equal(10, pool.AllocPages(held));
        using var putDone = new ManualResetEventSlim();
        using var mayExit = new ManualResetEventSlim();
        var putter = new Thread(() =>
        {
            foreach (NetMemRef p in held)
                pool.PutPage(p);
            putDone.Set();
            mayExit.Wait();
        });
        putter.Start();
        try
        {
            putDone.Wait();
            // Ten pages sit in the putter's cache, short of a flush: the putter holds it and will not come back.
            Assert.Equal(10, pool.PerCpuSnapshot().Pooled);
            pool.Dispose();
            Assert.True(pool.IsFreed);
            Assert.Equal(0, pool.GetStats().InFlight);
            Assert.Equal(0, pool.Provider.PagesInUse);
        }
        finally
        {
            mayExit.Set();
            putter.Join();
        }
    }

    [Fact]
    public void Dispose_takes_back_every_cache_held_by_live_threads_at_once()
    {
        // As many live putters as there are caches, each putting while the others hold theirs, so each ends up
        // holding a different cache: one drain takes them all back (with one barrier for all of them, which this
        // cannot observe; what it checks is that no cache and no page is missed).
        int putters = Math.Max(1, Environment.ProcessorCount);
        var pool = new PagePool(new PagePoolOptions());
        var held = new NetMemRef[putters * 3];
        Assert.Equal(held.Length, pool.AllocPages(held));
        using var mayExit = new ManualResetEventSlim();
        var putDone = new ManualResetEventSlim[putters];
        var threads = new Thread[putters];
        try
        {
            for (int t = 0; t < putters; t++)
            {
                int first = t * 3;
                ManualResetEventSlim done = putDone[t] = new ManualResetEventSlim();
                threads[t] = new Thread(() =>
                {
                    for (int i = first; i < first + 3; i++)
                        pool.PutPage(held[i]);
                    done.Set();
                    mayExit.Wait();
                });
                threads[t].Start();
                done.Wait();
            }
            Assert.Equal(held.Length, pool.PerCpuSnapshot().Pooled);
            pool.Dispose();
            Assert.True(pool.IsFreed);
            Assert.Equal(0, pool.PerCpuSnapshot().Pooled);
            Assert.Equal(0, pool.GetStats().InFlight);
        }
        finally
        {
            mayExit.Set();
            foreach (Thread t in threads)
                t?.Join();
            foreach (ManualResetEventSlim e in putDone)
                e?.Dispose();
        }
    }

    [Fact]
    public void Dispose_revokes_the_cache_of_a_thread_that_has_exited()
    {
        var pool = new PagePool(new PagePoolOptions());
        var held = new NetMemRef[5];
        Assert.Equal(5, pool.AllocPages(held));
        OtherThread.Run(() =>
        {
            foreach (NetMemRef p in held)
                pool.PutPage(p);
        });
        Assert.Equal(5, pool.PerCpuSnapshot().Pooled);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.Provider.PagesInUse);
    }

    [Fact]
    public void A_thread_that_lost_its_cache_to_a_drain_acquires_again_and_loses_nothing()
    {
        using var pool = new PagePool(new PagePoolOptions { LowWaterMark = 0 });
        var held = new NetMemRef[40];
        Assert.Equal(40, pool.AllocPages(held));
        using var phase = new SemaphoreSlim(0);
        using var next = new SemaphoreSlim(0);
        var putter = new Thread(() =>
        {
            for (int i = 0; i < 20; i++)
                pool.PutPage(held[i]);
            phase.Release();
            next.Wait();
            // The cache was revoked by the Trim below: this put must find out and take a cache again.
            for (int i = 20; i < 40; i++)
                pool.PutPage(held[i]);
            phase.Release();
        });
        putter.Start();
        phase.Wait();
        Assert.Equal(20, pool.PerCpuSnapshot().Pooled);
        pool.Trim();
        Assert.Equal(0, pool.PerCpuSnapshot().Pooled);
        next.Release();
        phase.Wait();
        putter.Join();
        Assert.Equal(20, pool.PerCpuSnapshot().Pooled);
        var s = pool.GetStats();
        Assert.Equal(s.InFlight, s.Pooled);
        Assert.Equal(40, s.RecycleRing);
    }

    [Fact]
    public void Put_from_inside_an_init_callback_of_a_shared_alloc_takes_the_ring_and_keeps_the_pool_consistent()
    {
        // A non-consumer alloc runs its slow path inside the thread's per-CPU section; a put from the callback is
        // a nested call and must not use (or close) that section.
        PagePool? pool = null;
        NetMemRef spare = default;
        int nested = 0;
        pool = new PagePool(new PagePoolOptions
        {
            LowWaterMark = 0,
            InitCallback = (page, _) =>
            {
                if (!spare.IsNull && Interlocked.Exchange(ref nested, 1) == 0)
                    pool!.PutPage(spare);
            },
        });
        using (pool)
        {
            OtherThread.Run(() =>
            {
                spare = pool.AllocPage();
                Assert.False(spare.IsNull);
                // The pool has pages cached from the first bulk: drain them so the next alloc takes the slow path.
                pool.Trim();
                NetMemRef p = pool.AllocPage();
                Assert.False(p.IsNull);
                Assert.Equal(1, nested);
                pool.PutPage(p);
            });
            var s = pool.GetStats();
            Assert.Equal(s.InFlight, s.Pooled);
        }
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void Trims_and_steals_racing_with_putters_lose_no_page_and_hand_none_out_twice()
    {
        const int Putters = 3;
        const int Rounds = 20_000;
        var pool = new PagePool(new PagePoolOptions { PoolSize = 256, LowWaterMark = 0 });
        var consumer = pool.BindConsumer();
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var claims = new System.Collections.Concurrent.ConcurrentDictionary<nint, int>();
        var toPutters = new System.Collections.Concurrent.BlockingCollection<nint>(boundedCapacity: 512);
        int running = Putters;

        var putters = Enumerable.Range(0, Putters).Select(id => new Thread(() =>
        {
            try
            {
                foreach (nint d in toPutters.GetConsumingEnumerable())
                {
                    if (!claims.TryRemove(d, out _))
                        errors.Enqueue($"page 0x{d:x} put but not claimed");
                    pool.PutPage(new NetMemRef((NetMem*)d));
                }
            }
            catch (Exception e) { errors.Enqueue(e.ToString()); }
            finally { Interlocked.Decrement(ref running); }
        })).ToList();
        var trimmer = new Thread(() =>
        {
            try
            {
                while (Volatile.Read(ref running) > 0)
                {
                    pool.Trim();
                    Thread.Yield();
                }
            }
            catch (Exception e) { errors.Enqueue(e.ToString()); }
        });
        putters.ForEach(t => t.Start());
        trimmer.Start();
        for (int i = 0; i < Rounds; i++)
        {
            NetMemRef p = consumer.AllocPage();
            if (p.IsNull)
                continue;
            if (!claims.TryAdd((nint)p.Descriptor, 0))
                errors.Enqueue($"page 0x{(nint)p.Address:x} handed out twice");
            toPutters.Add((nint)p.Descriptor);
        }
        toPutters.CompleteAdding();
        putters.ForEach(t => t.Join());
        trimmer.Join();
        Assert.Empty(errors);
        Assert.Empty(claims);
        var s = pool.GetStats();
        StatsAssert.Consistent(s);
        Assert.Equal(s.InFlight, s.Pooled);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.Provider.PagesInUse);
    }
}

/// <summary>A per-CPU section that ends with an exception still closes, so drains never wait on it.</summary>
[Collection(nameof(PoolTimingCollection))]
public class PerCpuSectionExceptionTests
{
    [Fact]
    public async Task A_put_that_throws_inside_its_per_CPU_section_does_not_leave_a_drain_waiting_for_it()
    {
        // The ring takes 16; the 64th put flushes 32, so 16 are released, and the first release's unmap throws.
        var mapper = new ThrowOnceUnmapMapper();
        var pool = new PagePool(new PagePoolOptions
        {
            PoolSize = 16,
            Flags = PagePoolFlags.DmaMap,
            DmaDirection = DmaDirection.FromDevice,
            DmaMapper = mapper,
        });
        var held = new NetMemRef[64];
        Assert.Equal(64, pool.AllocPages(held));
        OtherThread.Run(() =>
        {
            for (int i = 0; i < 63; i++)
                pool.PutPage(held[i]);
            Assert.Throws<InvalidOperationException>(() => pool.PutPage(held[63]));
        });
        Assert.Equal(1, mapper.Thrown);
        // Dispose revokes the putter's cache: it must find the putter's section closed, not wait forever.
        Task dispose = Task.Run(pool.Dispose);
        Task first = await Task.WhenAny(dispose, Task.Delay(TimeSpan.FromSeconds(30)));
        Assert.True(first == dispose, "Dispose waited for a section that had ended with an exception");
        Assert.True(pool.IsDisposed);
        // Of the 64: 16 went to the ring, 32 stayed cached, 15 of the 16 refused were released. Only the page whose
        // unmap threw is still out; none was released twice (that would have counted it twice).
        Assert.Equal(1, pool.GetStats().InFlight);
        Assert.False(pool.IsFreed);
    }

    private sealed class ThrowOnceUnmapMapper : PassThroughDmaMapper
    {
        public int Thrown;

        public override void Unmap(ulong dmaAddress, nuint size, DmaDirection direction)
        {
            if (Interlocked.Exchange(ref Thrown, 1) == 0)
                throw new InvalidOperationException("unmap failed (test)");
        }
    }

    [Fact]
    public void A_trim_from_a_DMA_unmap_called_inside_a_drain_does_not_drain_again()
    {
        // UpdateNid drains the putter's cache into a ring of 16; the rest is released inside the drain, and each
        // release's unmap calls Trim, which must neither re-take the cache the drain holds nor block.
        PagePool? pool = null;
        var mapper = new TrimOnUnmapMapper(() => pool!);
        pool = new PagePool(new PagePoolOptions
        {
            PoolSize = 16,
            Flags = PagePoolFlags.DmaMap,
            DmaDirection = DmaDirection.FromDevice,
            DmaMapper = mapper,
        });
        var held = new NetMemRef[40];
        Assert.Equal(40, pool.AllocPages(held));
        OtherThread.Run(() =>
        {
            foreach (NetMemRef p in held)
                pool.PutPage(p);
        });
        pool.UpdateNid(0);
        Assert.True(mapper.NestedTrims > 0);
        Assert.Equal(0, mapper.NestedReleased);
        var s = pool.GetStats();
        StatsAssert.Consistent(s);
        Assert.Equal(s.InFlight, s.Pooled);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.Provider.PagesInUse);
    }

    private sealed class TrimOnUnmapMapper(Func<PagePool> pool) : PassThroughDmaMapper
    {
        public int NestedTrims;
        public long NestedReleased;
        private bool _inTrim;

        public override void Unmap(ulong dmaAddress, nuint size, DmaDirection direction)
        {
            PagePool p = pool();
            if (_inTrim || p.IsDisposed)
                return;
            _inTrim = true;
            try
            {
                NestedTrims++;
                NestedReleased += p.Trim();
            }
            finally
            {
                _inTrim = false;
            }
        }
    }
}

/// <summary>A DMA mapper whose addresses are the CPU's; tests override what they need to observe.</summary>
internal unsafe class PassThroughDmaMapper : IDmaMapper
{
    public bool Map(void* address, nuint size, DmaDirection direction, out ulong dmaAddress)
    {
        dmaAddress = (ulong)address;
        return true;
    }

    public virtual void Unmap(ulong dmaAddress, nuint size, DmaDirection direction) { }

    public void SyncForDevice(ulong dmaAddress, nuint size, DmaDirection direction) { }

    public void SyncForCpu(ulong dmaAddress, nuint size, DmaDirection direction) { }
}
