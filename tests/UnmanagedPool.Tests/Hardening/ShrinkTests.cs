using System.Diagnostics;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Hardening;

public class ShrinkTests
{
    private static NetMemRef[] AllocMany(PagePoolConsumer consumer, int n)
    {
        var pages = new NetMemRef[n];
        for (int i = 0; i < n; i++)
        {
            pages[i] = consumer.AllocPage();
            Assert.False(pages[i].IsNull);
        }
        return pages;
    }

    [Fact]
    public void Trim_on_the_consumer_thread_keeps_the_low_water_mark_and_gives_empty_regions_back_to_the_os()
    {
        using var pool = new PagePool(new PagePoolOptions { LowWaterMark = 64, PoolSize = 4096 });
        var consumer = pool.BindConsumer();
        foreach (var p in AllocMany(consumer, 3000))
            consumer.RecycleDirect(p);
        PagePoolStats before = pool.GetStats();
        long reservedBefore = pool.Provider.BytesReserved;
        Assert.True(before.Pooled >= 3000);

        long released = pool.Trim();

        PagePoolStats after = pool.GetStats();
        Assert.Equal(64, after.Pooled);
        Assert.Equal(64, after.InFlight);
        Assert.Equal(before.Pooled - 64, released);
        Assert.Equal(released, after.Trimmed);
        Assert.True(pool.Provider.RegionsFreed > 0);
        Assert.True(pool.Provider.BytesReserved < reservedBefore);
        // The pages kept sit together: one 2 MiB region holds them all.
        Assert.Equal(1, pool.Provider.RegionCount);
        DebugModeTests.AssertConsistentAndUsable(pool, consumer);
    }

    [Fact]
    public void Trim_from_another_thread_leaves_the_alloc_cache_to_the_consumer_which_trims_it_when_it_overflows()
    {
        using var pool = new PagePool(new PagePoolOptions { LowWaterMark = 0 });
        var consumer = pool.BindConsumer();
        var pages = AllocMany(consumer, 301);
        for (int i = 0; i < 300; i++)
            consumer.RecycleDirect(pages[i]);
        var t = new Thread(() => pool.Trim());
        t.Start();
        t.Join();
        // What is left is the consumer's own: the full alloc cache and its put buffer in front of the ring.
        Assert.InRange(pool.GetStats().Pooled, PagePool.AllocCacheSize, PagePool.AllocCacheSize + PagePool.PutBufferSize - 1);

        consumer.RecycleDirect(pages[300]); // the alloc cache is full: the consumer trims it first

        PagePoolStats s = pool.GetStats();
        Assert.Equal(1, s.Pooled);
        Assert.Equal(1, s.InFlight);
        DebugModeTests.AssertConsistentAndUsable(pool, consumer);
    }

    [Fact]
    public void An_idle_pool_trims_itself_after_the_idle_delay()
    {
        using var pool = new PagePool(new PagePoolOptions { LowWaterMark = 16, IdleTrimDelay = TimeSpan.FromMilliseconds(50) });
        var consumer = pool.BindConsumer();
        var pages = AllocMany(consumer, 1000);
        var t = new Thread(() => { foreach (var p in pages) pool.PutPage(p); });
        t.Start();
        t.Join();
        Assert.True(pool.GetStats().Pooled >= 1000);

        // The timer runs on its own; wait (bounded) for it rather than for a fixed time.
        var sw = Stopwatch.StartNew();
        while (pool.GetStats().Trimmed == 0 && sw.Elapsed < TimeSpan.FromSeconds(20))
            Thread.Sleep(20);

        PagePoolStats s = pool.GetStats();
        Assert.True(s.Trimmed > 0);
        // 1000 pages came in bulks of 64: the 24 left in the consumer's alloc cache are the consumer's to trim;
        // the timer emptied the ring and the per-CPU caches.
        Assert.Equal(24, s.Pooled);
        Assert.Equal(24, s.InFlight);
        pool.Trim(); // on the consumer thread
        Assert.Equal(16, pool.GetStats().Pooled);
        Assert.Equal(16, pool.GetStats().InFlight);
        DebugModeTests.AssertConsistentAndUsable(pool, consumer);
    }

    [Fact]
    public void Past_the_memory_limit_allocation_returns_null_and_is_counted()
    {
        using var pool = new PagePool(new PagePoolOptions { MemoryLimit = 100 * 4096 });
        var consumer = pool.BindConsumer();
        var held = new List<NetMemRef>();
        NetMemRef p;
        while (!(p = consumer.AllocPage()).IsNull)
        {
            held.Add(p);
            Assert.True(held.Count <= 100);
        }
        Assert.Equal(100, held.Count);
        Assert.True(pool.AllocPage().IsNull);
        PagePoolStats s = pool.GetStats();
        Assert.Equal(2, s.AllocOverLimit);
        Assert.Equal(100, s.InFlight);
        consumer.RecycleDirect(held[0]);
        Assert.False(consumer.AllocPage().IsNull); // from the pool again, not the provider
        Assert.Equal(2, pool.GetStats().AllocOverLimit);
        foreach (var h in held.Skip(1))
            consumer.RecycleDirect(h);
    }

    [Fact]
    public void Shrink_options_reject_negative_values()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PagePoolOptions { LowWaterMark = -1 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new PagePoolOptions { MemoryLimit = -1 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new PagePoolOptions { IdleTrimDelay = TimeSpan.FromSeconds(-1) });
        Assert.Null(new PagePoolOptions().IdleTrimDelay);
    }

    [Fact]
    public void Trim_on_a_disposed_pool_throws_and_dispose_stops_the_idle_timer()
    {
        var pool = new PagePool(new PagePoolOptions { IdleTrimDelay = TimeSpan.FromMilliseconds(10) });
        var consumer = pool.BindConsumer();
        consumer.RecycleDirect(consumer.AllocPage());
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Throws<ObjectDisposedException>(() => pool.Trim());
        Thread.Sleep(50); // a timer left running would touch the freed pool here
        Assert.Equal(0, pool.GetStats().InFlight);
    }
}
