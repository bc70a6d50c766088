using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// The kernel's <c>page_pool_disable_direct_recycling</c> and <c>page_pool_unlink_napi</c> (net/core/page_pool.c):
/// a queue being stopped, or its NAPI moved to another context.
/// </summary>
public unsafe class ConsumerLifecycleTests
{
    [Fact]
    public void Page_pool_disable_direct_recycling_sends_direct_puts_through_the_ring_and_keeps_the_alloc_cache()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        var before = pool.GetStats();
        consumer.RecycleDirect(page);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 1));

        pool.DisableDirectRecycling();
        Assert.True(pool.IsDirectRecyclingDisabled);
        before = pool.GetStats();
        page = consumer.AllocPage(); // allocation from the alloc cache goes on
        StatsAssert.Moved(before, pool.GetStats(), ("AllocFast", 1));

        before = pool.GetStats();
        consumer.RecycleDirect(page);                  // the handle's fast path
        var page2 = consumer.AllocPage();
        pool.RecycleDirect(page2);                     // the pool's own method on the consumer thread
        var page3 = consumer.AllocPage();
        consumer.PutPage(page3, allowDirect: true);    // put with allowDirect
        var page4 = consumer.AllocPage();
        pool.PutPage(page4, allowDirect: true);
        StatsAssert.Moved(before, pool.GetStats(), ("AllocFast", 3), ("RecycleRing", 4));
    }

    [Fact]
    public void Direct_recycling_stays_disabled_across_a_new_bind_and_in_debug_mode()
    {
        using var pool = new PagePool(new PagePoolOptions { DebugMode = true });
        pool.DisableDirectRecycling();
        OtherThread.Run(() =>
        {
            var consumer = pool.BindConsumer();
            var page = consumer.AllocPage();
            var before = pool.GetStats();
            consumer.RecycleDirect(page);
            StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 1));
        });
    }

    [Fact]
    public void Page_pool_unlink_napi_makes_the_handle_throw_a_clear_exception_and_leaves_pages_untouched()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        pool.UnbindConsumer();

        Assert.True(pool.IsUnbound);
        Assert.False(consumer.IsBound);
        Assert.Equal(0, pool.ConsumerThreadId);
        var before = pool.GetStats();
        var e = Assert.Throws<InvalidOperationException>(() => consumer.RecycleDirect(page));
        Assert.Contains("UnbindConsumer", e.Message);
        Assert.Equal(1, page.Value.PpRefCount);
        Assert.Contains("UnbindConsumer", Assert.Throws<InvalidOperationException>(() => consumer.AllocPage()).Message);
        Assert.Throws<InvalidOperationException>(() => consumer.PutPage(page, allowDirect: false));
        Assert.Throws<InvalidOperationException>(() => consumer.AllocFrag(100, out _));
        Assert.Throws<InvalidOperationException>(() => consumer.AllocPages(new NetMemRef[4]));
        Assert.Equal(1, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats());

        // The pool's own methods work from every thread, through the any-thread paths: no direct recycle.
        pool.RecycleDirect(page);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 1));
    }

    [Fact]
    public void A_later_bind_on_another_thread_takes_over_the_alloc_cache_with_its_fast_paths()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        consumer.RecycleDirect(page); // on top of the alloc cache
        pool.UnbindConsumer();

        OtherThread.Run(() =>
        {
            var next = pool.BindConsumer();
            Assert.False(pool.IsUnbound);
            Assert.True(next.IsBound);
            Assert.Equal(Environment.CurrentManagedThreadId, pool.ConsumerThreadId);
            var before = pool.GetStats();
            var again = next.AllocPage();
            Assert.Equal(page, again); // the cache the old consumer left
            next.RecycleDirect(again);
            StatsAssert.Moved(before, pool.GetStats(), ("AllocFast", 1), ("RecycleCached", 1));
            var piece = next.AllocFrag(512, out _);
            next.PutPage(piece);
        });
        // The old handle is not current: the pool serves this thread through the any-thread paths.
        Assert.False(consumer.IsBound);
    }

    [Fact]
    public void Unbinding_drains_the_fragment_page_the_consumer_was_cutting()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var piece = consumer.AllocFrag(1000, out _);
        var second = consumer.AllocFrag(1000, out _);
        Assert.Equal(piece, second);
        consumer.PutPage(second);
        var before = pool.GetStats();
        pool.UnbindConsumer();
        // page_pool_drain_frag: the bias is gone, one piece is out, so one reference is left.
        Assert.Equal(1, piece.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats());
        OtherThread.Run(() => pool.PutPage(piece)); // the last piece recycles the page
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 1));
        Assert.Equal(0, pool.InFlight - pool.GetStats().Pooled);
    }

    [Fact]
    public void A_fragment_page_with_every_piece_back_goes_to_the_ring_when_the_consumer_unbinds()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var piece = consumer.AllocFrag(1000, out _);
        consumer.PutPage(piece);
        var before = pool.GetStats();
        pool.UnbindConsumer();
        Assert.Equal(0, piece.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 1));
        Assert.Equal(0, pool.InFlight - pool.GetStats().Pooled);
    }

    [Fact]
    public void An_unbound_pool_disposes_cleanly_and_releases_the_cache_it_kept()
    {
        var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        consumer.RecycleDirect(page);
        pool.UnbindConsumer();
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void A_bind_after_unbinding_a_disposed_pool_is_refused()
    {
        var pool = new PagePool(new PagePoolOptions());
        pool.UnbindConsumer();
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.BindConsumer());
    }
}
