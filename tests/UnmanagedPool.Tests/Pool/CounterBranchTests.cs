using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

/// <summary>One test per counter branch: each asserts exactly which counters moved, and by how much.</summary>
public unsafe class CounterBranchTests
{
    [Fact]
    public void The_first_allocation_finds_the_ring_empty_and_takes_64_pages_on_the_slow_path()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var before = pool.GetStats();
        var page = pool.AllocPage();
        Assert.False(page.IsNull);
        StatsAssert.Moved(before, pool.GetStats(), ("AllocEmpty", 1), ("AllocSlow", 1), ("Hold", 64));
        Assert.Equal(1, page.Value.PpRefCount);
        Assert.Equal(63, pool.GetStats().Pooled);
        pool.RecycleDirect(page);
    }

    [Fact]
    public void An_allocation_from_a_warm_cache_moves_only_alloc_fast()
    {
        using var pool = new PagePool(new PagePoolOptions());
        pool.RecycleDirect(pool.AllocPage());
        var before = pool.GetStats();
        var page = pool.AllocPage();
        StatsAssert.Moved(before, pool.GetStats(), ("AllocFast", 1));
        pool.RecycleDirect(page);
    }

    [Fact]
    public void An_order_2_pool_allocates_one_high_order_page_on_the_slow_path()
    {
        using var pool = new PagePool(new PagePoolOptions { Order = 2 });
        var before = pool.GetStats();
        var page = pool.AllocPage();
        StatsAssert.Moved(before, pool.GetStats(), ("AllocEmpty", 1), ("AllocSlowHighOrder", 1), ("Hold", 1));
        Assert.Equal(16384, page.Size);
        pool.RecycleDirect(page);
    }

    [Fact]
    public void Direct_recycling_on_the_consumer_moves_only_recycle_cached()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        var before = pool.GetStats();
        pool.RecycleDirect(page);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 1));
        Assert.Equal(0, page.Value.PpRefCount);
    }

    [Fact]
    public void Direct_recycling_into_a_full_cache_counts_cache_full_and_takes_the_ring()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var pages = new NetMemRef[PagePool.AllocCacheSize + 1];
        Assert.Equal(pages.Length, consumer.AllocPages(pages));
        for (int i = 0; i < PagePool.AllocCacheSize; i++)
            consumer.RecycleDirect(pages[i]);
        var before = pool.GetStats();
        consumer.RecycleDirect(pages[^1]);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCacheFull", 1), ("RecycleRing", 1));
    }

    [Fact]
    public void A_put_without_allow_direct_takes_the_ring_path()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        var before = pool.GetStats();
        pool.PutPage(page);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 1));
    }

    [Fact]
    public void Allow_direct_from_another_thread_is_ignored_and_the_page_takes_the_ring_path()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        var before = pool.GetStats();
        OtherThread.Run(() => pool.PutPage(page, allowDirect: true));
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 1));
        OtherThread.Run(() => pool.RecycleDirect(pool.AllocPage()));
        Assert.Equal(0, pool.GetStats().RecycleCached);
    }

    [Fact]
    public void Refilling_from_the_ring_counts_one_refill_and_then_fast_allocations()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var pages = new NetMemRef[64];
        consumer.AllocPages(pages); // the whole first bulk: the alloc cache is now empty
        OtherThread.Run(() => pool.PutPages(pages)); // 64 puts: the per-CPU cache flushes 32 to the ring
        var before = pool.GetStats();
        var again = new NetMemRef[32];
        Assert.Equal(32, consumer.AllocPages(again));
        StatsAssert.Moved(before, pool.GetStats(), ("AllocRefill", 1), ("AllocFast", 31));
        Assert.All(again, p => Assert.Contains(p, pages));
        pool.PutPages(again);
    }

    [Fact]
    public void The_consumer_takes_pages_parked_in_per_cpu_caches_only_when_the_provider_is_exhausted()
    {
        // One 64 KiB region at most: 15 usable pages.
        using var provider = new PageProvider(regionShift: 16, memoryLimit: 1 << 16);
        using var pool = new PagePool(new PagePoolOptions { Provider = provider });
        var pages = new NetMemRef[15];
        Assert.Equal(15, pool.AllocPages(pages));
        Assert.True(pool.AllocPage().IsNull);
        OtherThread.Run(() => pool.PutPages(pages.AsSpan(0, 10))); // parked in a per-CPU cache
        var before = pool.GetStats();
        var page = pool.AllocPage();
        Assert.False(page.IsNull);
        Assert.Contains(page, pages.AsSpan(0, 10).ToArray());
        var after = pool.GetStats();
        Assert.Equal(1, after.AllocRefill - before.AllocRefill);
        Assert.Equal(1, after.AllocEmpty - before.AllocEmpty);
        pool.RecycleDirect(page);
        pool.PutPages(pages.AsSpan(10));
    }

    [Fact]
    public void Pages_flushed_to_the_ring_in_bulk_come_back_through_refills()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var pages = new NetMemRef[256];
        Assert.Equal(256, consumer.AllocPages(pages));
        pool.PutPages(pages);
        var s = pool.GetStats();
        Assert.Equal(256, s.RecycleRing);
        Assert.Equal(256, s.Pooled);
        var before = s;
        var again = new NetMemRef[256];
        Assert.Equal(256, consumer.AllocPages(again));
        var after = pool.GetStats();
        Assert.Equal(0, after.AllocSlow - before.AllocSlow);
        Assert.Equal(256, (after.AllocRefill - before.AllocRefill) + (after.AllocFast - before.AllocFast));
        Assert.Equal(pages.Select(p => (nint)p.Descriptor).Order(), again.Select(p => (nint)p.Descriptor).Order());
        pool.PutPages(again);
    }

    [Fact]
    public void A_page_with_an_extra_page_reference_is_released_not_recycled()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        Assert.Equal(2, page.GetPage());
        var before = pool.GetStats();
        pool.PutPage(page);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleReleasedRefcnt", 1), ("Release", 1));
        Assert.False(page.IsPagePool);
        Assert.Equal(PageState.InUse, page.State);
        Assert.True(page.PutPage()); // the other holder's put_page frees it to the provider
        Assert.Equal(PageState.Free, page.State);
    }

    [Fact]
    public void Pages_beyond_the_ring_capacity_are_released_as_ring_full()
    {
        using var pool = new PagePool(new PagePoolOptions { PoolSize = 32 });
        var pages = new NetMemRef[512];
        Assert.Equal(pages.Length, pool.AllocPages(pages));
        var before = pool.GetStats();
        foreach (var p in pages)
            pool.PutPage(p);
        var after = pool.GetStats();
        long ringFull = after.RecycleRingFull - before.RecycleRingFull;
        long ring = after.RecycleRing - before.RecycleRing;
        Assert.True(ringFull > 0, "nothing was counted ring_full");
        Assert.Equal(pages.Length, ring + ringFull);
        Assert.Equal(ringFull, after.Release - before.Release);
        StatsAssert.Moved(before, after, ("RecycleRing", ring), ("RecycleRingFull", ringFull), ("Release", ringFull));
        StatsAssert.Consistent(after);
    }

    [Fact]
    public void Release_page_returns_the_page_to_the_provider_and_counts_a_release()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        var before = pool.GetStats();
        pool.ReleasePage(page);
        StatsAssert.Moved(before, pool.GetStats(), ("Release", 1));
        Assert.Equal(PageState.Free, page.State);
        Assert.Equal(0UL, page.Value.PpMagic);
    }
}
