using UnmanagedPool.Native;
using UnmanagedPool.Tests.Hardening;

namespace UnmanagedPool.Tests.Pool;

/// <summary>
/// PutPages from a thread other than the consumer: the one-pass path for ordinary pages, and what sends a batch
/// back to the checked path with nothing changed.
/// </summary>
public unsafe class BulkPutTests
{
    private static NetMemRef[] Alloc(PagePoolConsumer consumer, int n)
    {
        var pages = new NetMemRef[n];
        Assert.Equal(n, consumer.AllocPages(pages));
        return pages;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(31)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(200)]
    public void A_batch_of_ordinary_pages_from_another_thread_is_counted_as_ring_and_every_page_is_back_in_the_pool(int n)
    {
        var pool = new PagePool(new PagePoolOptions { PoolSize = 1024 });
        var consumer = pool.BindConsumer();
        NetMemRef[] pages = Alloc(consumer, n);
        PagePoolStats before = pool.GetStats();
        OtherThread.Run(() => pool.PutPages(pages));
        PagePoolStats after = pool.GetStats();
        StatsAssert.Moved(before, after, ("RecycleRing", n));
        StatsAssert.Consistent(after);
        Assert.All(pages, p => Assert.Equal(0, p.Value.PpRefCount));
        Assert.Equal(after.Pooled, after.InFlight);
        // Dispose finds every page in the ring, the per-CPU caches and the alloc cache: none is lost.
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void A_bad_page_at_the_end_of_a_batch_from_another_thread_puts_none_and_restores_every_count()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        NetMemRef[] good = Alloc(consumer, 40);
        NetMemRef[] batch = [.. good, NetMemRef.Null];
        PagePoolStats before = pool.GetStats();
        Assert.Throws<InvalidOperationException>(() => OtherThread.Run(() => pool.PutPages(batch)));
        StatsAssert.Moved(before, pool.GetStats());
        Assert.All(good, p => Assert.Equal(1, p.Value.PpRefCount));

        OtherThread.Run(() => pool.PutPages(good));
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", good.Length));
    }

    [Fact]
    public void A_foreign_page_in_the_middle_of_a_batch_from_another_thread_puts_none()
    {
        using var other = new PagePool(new PagePoolOptions());
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        NetMemRef[] good = Alloc(consumer, 8);
        NetMemRef stranger = OtherThread.Run(() => other.AllocPage());
        NetMemRef[] batch = [.. good[..4], stranger, .. good[4..]];
        PagePoolStats before = pool.GetStats();
        var e = Assert.Throws<InvalidOperationException>(() => OtherThread.Run(() => pool.PutPages(batch)));
        Assert.Contains($"0x{(nint)stranger.Address:x}", e.Message);
        StatsAssert.Moved(before, pool.GetStats());
        Assert.All(good, p => Assert.Equal(1, p.Value.PpRefCount));
        Assert.Equal(1, stranger.Value.PpRefCount);
        OtherThread.Run(() => other.PutPage(stranger));
        OtherThread.Run(() => pool.PutPages(good));
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", good.Length));
    }

    [Fact]
    public void A_page_listed_twice_in_a_batch_from_another_thread_is_put_once_and_the_second_refused()
    {
        var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        NetMemRef[] pages = Alloc(consumer, 6);
        NetMemRef[] batch = [pages[0], pages[1], pages[2], pages[1], pages[3], pages[4], pages[5]];
        PagePoolStats before = pool.GetStats();
        var e = Assert.Throws<InvalidOperationException>(() => OtherThread.Run(() => pool.PutPages(batch)));
        Assert.Contains($"0x{(nint)pages[1].Address:x}", e.Message);
        // The checked path puts what comes before the extra listing and refuses from there, as on the consumer.
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 3));
        Assert.Equal(0, pages[0].Value.PpRefCount);
        Assert.Equal(0, pages[1].Value.PpRefCount);
        Assert.Equal(0, pages[2].Value.PpRefCount);
        Assert.All(pages[3..], p => Assert.Equal(1, p.Value.PpRefCount));
        OtherThread.Run(() => pool.PutPages(pages[3..]));
        PagePoolStats after = pool.GetStats();
        StatsAssert.Moved(before, after, ("RecycleRing", 6));
        Assert.Equal(after.Pooled, after.InFlight);
        DebugModeTests.AssertConsistentAndUsable(pool, consumer);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void A_page_with_a_second_reference_in_a_batch_from_another_thread_keeps_one_and_the_rest_are_recycled()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        NetMemRef[] pages = Alloc(consumer, 10);
        pool.RefPage(pages[5]);
        PagePoolStats before = pool.GetStats();
        OtherThread.Run(() => pool.PutPages(pages));
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 9));
        Assert.Equal(1, pages[5].Value.PpRefCount);
        OtherThread.Run(() => pool.PutPage(pages[5]));
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 10));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(7)]
    public void Short_bursts_from_a_thread_that_holds_a_per_cpu_cache_are_counted_as_ring_across_its_flushes(int burst)
    {
        // 210 pages in bursts on one thread: the first burst acquires the cache, the later ones append to it
        // directly until a burst would fill it, which flushes half of it to the ring (several times over).
        var pool = new PagePool(new PagePoolOptions { PoolSize = 1024 });
        var consumer = pool.BindConsumer();
        NetMemRef[] pages = Alloc(consumer, 210);
        PagePoolStats before = pool.GetStats();
        long acquisitionsBefore = pool.PerCpuSnapshot().Acquisitions;
        OtherThread.Run(() =>
        {
            for (int i = 0; i < pages.Length; i += burst)
                pool.PutPages(pages.AsSpan(i, Math.Min(burst, pages.Length - i)));
        });
        PagePoolStats after = pool.GetStats();
        StatsAssert.Moved(before, after, ("RecycleRing", pages.Length));
        StatsAssert.Consistent(after);
        Assert.All(pages, p => Assert.Equal(0, p.Value.PpRefCount));
        // One acquisition for every burst (ownership is sticky), and the cache was flushed: it holds less than 64.
        (long acquisitions, int perCpu) = pool.PerCpuSnapshot();
        Assert.Equal(1, acquisitions - acquisitionsBefore);
        Assert.InRange(perCpu, 1, 63);
        Assert.Equal(after.Pooled, after.InFlight);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void A_short_burst_on_the_consumer_thread_goes_to_its_put_buffer_and_a_page_put_again_is_refused()
    {
        var pool = new PagePool(new PagePoolOptions { PoolSize = 1024 });
        var consumer = pool.BindConsumer();
        NetMemRef[] pages = Alloc(consumer, 150);
        PagePoolStats before = pool.GetStats();
        for (int i = 0; i < pages.Length; i += 5)
            pool.PutPages(pages.AsSpan(i, 5));
        PagePoolStats after = pool.GetStats();
        StatsAssert.Moved(before, after, ("RecycleRing", pages.Length));
        Assert.All(pages, p => Assert.Equal(0, p.Value.PpRefCount));

        // A burst that lists a page already back in the pool is refused whole, with nothing changed.
        NetMemRef[] fresh = Alloc(consumer, 2);
        NetMemRef[] again = [fresh[0], pages[^1], fresh[1]];
        PagePoolStats beforeBad = pool.GetStats();
        Assert.Throws<InvalidOperationException>(() => pool.PutPages(again));
        StatsAssert.Moved(beforeBad, pool.GetStats());
        Assert.All(fresh, p => Assert.Equal(1, p.Value.PpRefCount));
        pool.PutPages(fresh);
        Assert.Equal(pool.GetStats().Pooled, pool.GetStats().InFlight);
        DebugModeTests.AssertConsistentAndUsable(pool, consumer);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void A_short_burst_from_a_thread_that_held_a_per_cpu_cache_before_Dispose_is_released_and_frees_the_pool()
    {
        var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        NetMemRef[] early = Alloc(consumer, 4);
        NetMemRef[] late = Alloc(consumer, 4);
        using var go = new ManualResetEventSlim();
        using var held = new ManualResetEventSlim();
        Exception? error = null;
        var t = new Thread(() =>
        {
            try
            {
                pool.PutPages(early); // acquires a per-CPU cache that the thread keeps
                held.Set();
                go.Wait();
                pool.PutPages(late);
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        t.Start();
        held.Wait();
        pool.Dispose();
        Assert.False(pool.IsFreed);
        go.Set();
        t.Join();
        Assert.Null(error);
        Assert.Equal(0, pool.GetStats().InFlight);
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void A_batch_from_another_thread_after_Dispose_is_released_and_frees_the_pool()
    {
        var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        NetMemRef[] pages = Alloc(consumer, 48);
        pool.Dispose();
        Assert.False(pool.IsFreed);
        OtherThread.Run(() => pool.PutPages(pages));
        PagePoolStats s = pool.GetStats();
        Assert.Equal(0, s.InFlight);
        Assert.True(pool.IsFreed);
    }
}
