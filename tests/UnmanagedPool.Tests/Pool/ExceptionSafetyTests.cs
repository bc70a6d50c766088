using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

/// <summary>
/// A DMA mapper or init callback that throws in the middle of a batch operation: the exception reaches the caller,
/// and every page is still accounted for exactly once: in the pool, with the user, back with the provider, or (the
/// one whose release threw) in flight. None is lost, none is both in the ring and in a cache.
/// </summary>
[Collection(nameof(PoolTimingCollection))]
public unsafe class ExceptionSafetyTests
{
    private static (PagePool Pool, PageProvider Provider, ArmedUnmapMapper Mapper) NewPool(
        int ringSize, int lowWaterMark = PagePoolOptions.DefaultLowWaterMark)
    {
        var provider = new PageProvider();
        var mapper = new ArmedUnmapMapper();
        var pool = new PagePool(new PagePoolOptions
        {
            PoolSize = ringSize,
            Flags = PagePoolFlags.DmaMap,
            DmaDirection = DmaDirection.FromDevice,
            DmaMapper = mapper,
            Provider = provider,
            LowWaterMark = lowWaterMark,
        });
        return (pool, provider, mapper);
    }

    /// <summary>Every page the provider lent is the pool's (pooled or out with the user) or stuck after a throw.</summary>
    private static void AssertAccounted(PagePool pool, PageProvider provider, long withUser, long stuck)
    {
        PagePoolStats s = pool.GetStats();
        StatsAssert.Consistent(s);
        Assert.Equal(s.InFlight, provider.PagesInUse);
        Assert.Equal(withUser + stuck + s.Pooled, s.InFlight);
    }

    /// <summary>Disposes the pool with every page back but the one whose release threw: that one keeps it alive.</summary>
    private static void DisposeWithOnePageStuck(PagePool pool, PageProvider provider)
    {
        pool.Dispose();
        Assert.Equal(1, pool.InFlight);
        provider.Dispose();
    }

    [Fact]
    public void UpdateNid_whose_unmap_throws_leaves_no_page_both_in_the_ring_and_in_the_put_buffer()
    {
        var (pool, provider, mapper) = NewPool(ringSize: 16);
        var held = new NetMemRef[64];
        Assert.Equal(64, pool.AllocPages(held));
        // 20 pages in the consumer's put buffer; the ring takes 16 of them at UpdateNid, the other 4 are released.
        for (int i = 0; i < 20; i++)
            pool.PutPage(held[i]);
        mapper.ThrowOnNextUnmap();
        Assert.Throws<InvalidOperationException>(() => pool.UpdateNid(0));
        Assert.Equal(1, mapper.Thrown);
        AssertAccounted(pool, provider, withUser: 44, stuck: 1);

        // The 16 pages in the ring come out once each, and the put buffer does not hand them out again.
        var seen = new HashSet<nint>();
        for (int i = 44; i < 64; i++)
            seen.Add((nint)held[i].Address);
        var again = new NetMemRef[40];
        for (int i = 0; i < again.Length; i++)
        {
            again[i] = pool.AllocPage();
            Assert.False(again[i].IsNull);
            Assert.True(seen.Add((nint)again[i].Address), $"page {(nint)again[i].Address:x} handed out twice");
        }
        foreach (NetMemRef p in again)
            pool.PutPage(p);
        for (int i = 20; i < 64; i++)
            pool.PutPage(held[i]);
        AssertAccounted(pool, provider, withUser: 0, stuck: 1);
        DisposeWithOnePageStuck(pool, provider);
    }

    [Fact]
    public void UpdateNid_whose_unmap_throws_while_draining_a_per_CPU_cache_leaves_that_cache_empty()
    {
        var (pool, provider, mapper) = NewPool(ringSize: 16);
        // One bulk of 64 leaves the alloc cache empty: UpdateNid has nothing to release before the per-CPU drain.
        var held = new NetMemRef[64];
        Assert.Equal(64, pool.AllocPages(held));
        // 40 pages in another thread's per-CPU cache, short of a flush; UpdateNid spills them into a ring of 16.
        OtherThread.Run(() =>
        {
            for (int i = 0; i < 40; i++)
                pool.PutPage(held[i]);
        });
        Assert.Equal(40, pool.PerCpuSnapshot().Pooled);
        mapper.ThrowOnNextUnmap();
        Assert.Throws<InvalidOperationException>(() => pool.UpdateNid(0));
        Assert.Equal(1, mapper.Thrown);
        Assert.Equal(0, pool.PerCpuSnapshot().Pooled);
        AssertAccounted(pool, provider, withUser: 24, stuck: 1);
        for (int i = 40; i < 64; i++)
            pool.PutPage(held[i]);
        DisposeWithOnePageStuck(pool, provider);
    }

    [Fact]
    public void A_bulk_put_whose_flush_throws_still_puts_the_rest_of_the_batch()
    {
        var (pool, provider, mapper) = NewPool(ringSize: 16);
        var held = new NetMemRef[100];
        Assert.Equal(100, pool.AllocPages(held));
        mapper.ThrowOnNextUnmap();
        // From another thread: the 64th page fills the per-CPU cache, its flush finds 16 ring slots for 32 pages,
        // and the first release throws; the 36 pages after it must not be dropped.
        OtherThread.Run(() => Assert.Throws<InvalidOperationException>(() => pool.PutPages(held)));
        Assert.Equal(1, mapper.Thrown);
        AssertAccounted(pool, provider, withUser: 0, stuck: 1);
        DisposeWithOnePageStuck(pool, provider);
    }

    [Fact]
    public void A_bulk_put_on_the_consumer_whose_flush_throws_still_puts_the_rest_of_the_batch()
    {
        var (pool, provider, mapper) = NewPool(ringSize: 16);
        var held = new NetMemRef[PagePool.PutBufferSize + 36];
        Assert.Equal(held.Length, pool.AllocPages(held));
        mapper.ThrowOnNextUnmap();
        // On the consumer: the 128th page fills the put buffer, its flush finds 16 ring slots for 64 pages, and the
        // first release throws; the 36 pages after it must not be dropped.
        Assert.Throws<InvalidOperationException>(() => pool.PutPages(held));
        Assert.Equal(1, mapper.Thrown);
        Assert.All(held, p => Assert.Equal(0, p.Value.PpRefCount));
        AssertAccounted(pool, provider, withUser: 0, stuck: 1);
        DisposeWithOnePageStuck(pool, provider);
    }

    [Fact]
    public void An_init_callback_that_throws_gives_its_page_and_the_rest_of_the_bulk_back_to_the_provider()
    {
        using var provider = new PageProvider();
        int calls = 0;
        using var pool = new PagePool(new PagePoolOptions
        {
            Provider = provider,
            InitCallback = (_, _) =>
            {
                if (++calls == 10)
                    throw new InvalidOperationException("init failed (test)");
            },
        });
        Assert.Throws<InvalidOperationException>(() => pool.AllocPage());
        // Nine pages were set up before the throw: they are the pool's, and nothing else is out.
        PagePoolStats s = pool.GetStats();
        StatsAssert.Consistent(s);
        Assert.Equal(9, s.Hold);
        Assert.Equal(9, s.Pooled);
        Assert.Equal(9, provider.PagesInUse);
        // The pool goes on: the nine come out first, then a fresh bulk.
        var pages = new NetMemRef[20];
        for (int i = 0; i < pages.Length; i++)
            Assert.False((pages[i] = pool.AllocPage()).IsNull);
        Assert.Equal(20, pages.Select(p => (nint)p.Address).Distinct().Count());
        foreach (NetMemRef p in pages)
            pool.RecycleDirect(p);
        Assert.Equal(pool.InFlight, provider.PagesInUse);
    }

    [Fact]
    public void A_bulk_put_whose_release_of_a_shared_page_throws_still_recycles_the_rest()
    {
        var (pool, provider, mapper) = NewPool(ringSize: 64);
        var held = new NetMemRef[4];
        Assert.Equal(4, pool.AllocPages(held));
        // The last page has a second page reference: the put releases it (released_refcnt), and that unmap throws.
        held[3].GetPage();
        mapper.ThrowOnNextUnmap();
        OtherThread.Run(() => Assert.Throws<InvalidOperationException>(() => pool.PutPages(held)));
        Assert.Equal(1, mapper.Thrown);
        // The three before it went to the per-CPU cache; the fourth is stuck (its release threw), none is lost.
        AssertAccounted(pool, provider, withUser: 0, stuck: 1);
        held[3].PutPage();
        pool.Dispose();
        provider.Dispose();
    }

    [Fact]
    public void A_deferred_trim_whose_unmap_throws_does_not_lose_the_page_being_recycled()
    {
        var (pool, provider, mapper) = NewPool(ringSize: 1024, lowWaterMark: 0);
        var held = new NetMemRef[129];
        Assert.Equal(129, pool.AllocPages(held));
        for (int i = 0; i < 128; i++)
            pool.RecycleDirect(held[i]);
        // Another thread's Trim cannot touch the consumer's full alloc cache: it asks the consumer to trim it at
        // its next overflow, which is the next direct recycle.
        OtherThread.Run(() => pool.Trim());
        mapper.ThrowOnNextUnmap();
        Assert.Throws<InvalidOperationException>(() => pool.RecycleDirect(held[128]));
        Assert.Equal(1, mapper.Thrown);
        AssertAccounted(pool, provider, withUser: 0, stuck: 1);
        // The trim took the put buffer (the 63 recycles past the full cache) and the whole cache (128), and the
        // rest went on after the first release threw; that page is not counted as trimmed. Every release here is
        // a trim's.
        PagePoolStats s = pool.GetStats();
        Assert.Equal(63 + 128 - 1, s.Trimmed);
        Assert.Equal(s.Release, s.Trimmed);
        pool.Dispose();
        provider.Dispose();
    }

    [Fact]
    public void Dispose_whose_unmap_throws_still_releases_every_other_page_and_keeps_retrying()
    {
        var (pool, provider, mapper) = NewPool(ringSize: 64);
        var held = new NetMemRef[60];
        Assert.Equal(60, pool.AllocPages(held));
        for (int i = 0; i < 30; i++)
            pool.RecycleDirect(held[i]);
        for (int i = 30; i < 60; i++)
            pool.PutPage(held[i]);
        mapper.ThrowOnNextUnmap();
        Assert.Throws<InvalidOperationException>(pool.Dispose);
        Assert.True(pool.IsDisposed);
        Assert.False(pool.IsFreed);
        // Only the page whose unmap threw is still out: the cache's other pages and the put buffer were released.
        Assert.Equal(1, pool.InFlight);
        Assert.Equal(1, provider.PagesInUse);
        Assert.Equal(0, pool.GetStats().Pooled);
        provider.Dispose();
    }

    [Fact]
    public void Dispose_whose_unmap_throws_in_the_ring_drain_still_empties_the_rest_of_the_ring_and_every_per_CPU_cache()
    {
        var (pool, provider, mapper) = NewPool(ringSize: 256);
        // Four bulks leave the alloc cache empty, and nothing goes to the put buffer: Dispose's first release is
        // in the ring, which holds more than one drain batch, and the per-CPU caches come after it.
        var held = new NetMemRef[256];
        Assert.Equal(256, pool.AllocPages(held));
        OtherThread.Run(() =>
        {
            for (int i = 0; i < 150; i++)
                pool.PutPage(held[i]);
        });
        // Another thread: another per-CPU cache where there is more than one CPU (the first stays with its holder).
        OtherThread.Run(() =>
        {
            for (int i = 150; i < 190; i++)
                pool.PutPage(held[i]);
        });
        Assert.True(pool.GetStats().Pooled - pool.PerCpuSnapshot().Pooled > 64, "the ring holds less than a batch");
        Assert.True(pool.PerCpuSnapshot().Pooled > 0);
        AssertAccounted(pool, provider, withUser: 66, stuck: 0);

        mapper.ThrowOnNextUnmap();
        Assert.Throws<InvalidOperationException>(pool.Dispose);
        Assert.Equal(1, mapper.Thrown);
        // At once, not on a retry: only the page whose unmap threw is out besides the user's.
        Assert.Equal(0, pool.PerCpuSnapshot().Pooled);
        Assert.Equal(0, pool.GetStats().Pooled);
        Assert.Equal(66 + 1, pool.InFlight);
        Assert.Equal(66 + 1, provider.PagesInUse);
        for (int i = 190; i < 256; i++)
            pool.PutPage(held[i]);
        DisposeWithOnePageStuck(pool, provider);
    }

    [Fact]
    public void UpdateNid_whose_unmap_throws_releasing_the_alloc_cache_still_spills_the_put_buffer_and_the_per_CPU_caches()
    {
        var (pool, provider, mapper) = NewPool(ringSize: 64);
        // Two bulks: 100 pages out, 28 in the alloc cache.
        var held = new NetMemRef[100];
        Assert.Equal(100, pool.AllocPages(held));
        for (int i = 0; i < 10; i++)
            pool.PutPage(held[i]); // the consumer's put buffer
        OtherThread.Run(() =>
        {
            for (int i = 10; i < 40; i++)
                pool.PutPage(held[i]); // a per-CPU cache
        });
        Assert.Equal(30, pool.PerCpuSnapshot().Pooled);
        Assert.Equal(28 + 10 + 30, pool.GetStats().Pooled);

        mapper.ThrowOnNextUnmap();
        Assert.Throws<InvalidOperationException>(() => pool.UpdateNid(0));
        Assert.Equal(1, mapper.Thrown);
        // The alloc cache's other 27 pages are released; the put buffer and the per-CPU cache are in the ring.
        Assert.Equal(0, pool.PerCpuSnapshot().Pooled);
        Assert.Equal(40, pool.GetStats().Pooled);
        AssertAccounted(pool, provider, withUser: 60, stuck: 1);
        for (int i = 40; i < 100; i++)
            pool.PutPage(held[i]);
        DisposeWithOnePageStuck(pool, provider);
    }

    [Fact]
    public void Trim_whose_unmap_throws_keeps_the_pages_it_meant_to_keep()
    {
        var (pool, provider, mapper) = NewPool(ringSize: 256, lowWaterMark: 40);
        var held = new NetMemRef[128];
        Assert.Equal(128, pool.AllocPages(held));
        foreach (NetMemRef p in held)
            pool.PutPage(p);
        mapper.ThrowOnNextUnmap();
        Assert.Throws<InvalidOperationException>(() => pool.Trim());
        PagePoolStats s = pool.GetStats();
        Assert.Equal(40, s.Pooled);
        // Trimmed counts the pages given back, not the one whose release threw (every release here is the trim's).
        Assert.Equal(128 - 40 - 1, s.Trimmed);
        Assert.Equal(s.Release, s.Trimmed);
        AssertAccounted(pool, provider, withUser: 0, stuck: 1);
        // The kept pages are all distinct and usable.
        var again = new NetMemRef[40];
        for (int i = 0; i < again.Length; i++)
            Assert.False((again[i] = pool.AllocPage()).IsNull);
        Assert.Equal(40, again.Select(p => (nint)p.Address).Distinct().Count());
        Assert.Equal(s.AllocSlow, pool.GetStats().AllocSlow);
        foreach (NetMemRef p in again)
            pool.PutPage(p);
        DisposeWithOnePageStuck(pool, provider);
    }

    private sealed class ArmedUnmapMapper : PassThroughDmaMapper
    {
        private int _armed;
        public int Thrown;

        public void ThrowOnNextUnmap() => Volatile.Write(ref _armed, 1);

        public override void Unmap(ulong dmaAddress, nuint size, DmaDirection direction)
        {
            if (Interlocked.Exchange(ref _armed, 0) == 1)
            {
                Interlocked.Increment(ref Thrown);
                throw new InvalidOperationException("unmap failed (test)");
            }
        }
    }
}
