using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

public unsafe class ConsumerTests
{
    [Fact]
    public void Bind_consumer_moves_the_napi_context_to_the_calling_thread()
    {
        using var pool = new PagePool(new PagePoolOptions());
        Assert.Equal(Environment.CurrentManagedThreadId, pool.ConsumerThreadId);
        var page = pool.AllocPage();
        OtherThread.Run(() =>
        {
            var consumer = pool.BindConsumer();
            Assert.True(consumer.IsBound);
            Assert.Equal(Environment.CurrentManagedThreadId, pool.ConsumerThreadId);
            pool.RecycleDirect(page); // the pool's own method: honoured here now
        });
        Assert.Equal(1, pool.GetStats().RecycleCached);
    }

    [Fact]
    public void In_debug_mode_a_consumer_handle_used_on_another_thread_throws()
    {
        using var pool = new PagePool(new PagePoolOptions { DebugMode = true });
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        var e = Assert.Throws<InvalidOperationException>(() => OtherThread.Run(() => consumer.RecycleDirect(page)));
        Assert.Contains("used on thread", e.Message);
        Assert.Equal(1, page.Value.PpRefCount);
        var replaced = pool.BindConsumer();
        Assert.False(consumer.IsBound);
        Assert.Throws<InvalidOperationException>(() => consumer.AllocPage());
        replaced.RecycleDirect(page);
    }

    [Fact]
    public void A_copy_of_a_handle_is_the_same_handle_and_a_later_bind_replaces_every_copy()
    {
        using var pool = new PagePool(new PagePoolOptions());
        PagePoolConsumer first = pool.BindConsumer();
        PagePoolConsumer copy = first;
        Assert.True(copy == first);
        Assert.Equal(first.GetHashCode(), copy.GetHashCode());
        Assert.True(copy.IsBound);

        PagePoolConsumer second = pool.BindConsumer();
        Assert.True(second != first);
        Assert.False(first.IsBound);
        Assert.False(copy.IsBound);
        Assert.True(second.IsBound);
        Assert.False(default(PagePoolConsumer).IsBound);
        Assert.Same(pool, second.Pool);

        // The replaced handle still reaches the same alloc cache on its thread (the pool keeps one).
        var page = second.AllocPage();
        first.RecycleDirect(page);
        Assert.Equal(page, second.AllocPage());
        second.RecycleDirect(page);
    }

    [Fact]
    public void The_consumer_handle_accepts_raw_addresses_anywhere_inside_the_page()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        consumer.RecycleDirect(page.Address + 4095);
        Assert.Equal(0, page.Value.PpRefCount);
        var again = consumer.AllocPage();
        Assert.Equal(page, again);
        consumer.PutPage(again.Address + 17, dmaSyncSize: 64, allowDirect: false);
        Assert.Equal(1, pool.GetStats().RecycleRing);
    }

    [Fact]
    public void Allocation_from_another_thread_goes_through_the_per_cpu_cache_and_the_ring()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var pages = OtherThread.Run(() =>
        {
            var list = new NetMemRef[100];
            for (int i = 0; i < list.Length; i++)
                list[i] = pool.AllocPage();
            return list;
        });
        Assert.All(pages, p => Assert.False(p.IsNull));
        Assert.Equal(100, pages.Select(p => (nint)p.Descriptor).Distinct().Count());
        var s = pool.GetStats();
        Assert.True(s.AllocSlow >= 2);
        Assert.Equal(0, s.RecycleCached);
        OtherThread.Run(() => { foreach (var p in pages) pool.PutPage(p); });
        // 100 puts flush 64 pages to the ring; whichever CPU the next thread runs on, it finds a page in its
        // per-CPU cache or in the ring, without the slow path.
        long slowBefore = pool.GetStats().AllocSlow;
        var again = OtherThread.Run(() => pool.AllocPage());
        Assert.False(again.IsNull);
        Assert.Equal(slowBefore, pool.GetStats().AllocSlow);
        pool.PutPage(again);
        Assert.Equal(pool.GetStats().Pooled, pool.GetStats().InFlight);
    }

    [Fact]
    public void Bulk_put_and_unref_accept_raw_addresses()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var pages = new NetMemRef[8];
        pool.AllocPages(pages);
        pool.RefPage(pages[0]);
        Assert.Equal(1, pool.UnrefPage(pages[0].Address + 12, 1));
        var addresses = pages.Select(p => (nint)p.Address + 5).ToArray();
        pool.PutPages(addresses);
        Assert.All(pages, p => Assert.Equal(0, p.Value.PpRefCount));
        Assert.Throws<InvalidOperationException>(() => pool.PutPages(addresses));
        Assert.Throws<InvalidOperationException>(() => pool.PutPages(new nint[] { 12345 }));
    }
}
