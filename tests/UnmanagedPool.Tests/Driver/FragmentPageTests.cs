using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// The kernel's <c>page_pool_fragment_netmem</c> / <c>page_pool_fragment_page</c> (include/net/page_pool/helpers.h):
/// a driver sets a whole page's pp_ref_count and splits the page itself.
/// </summary>
public unsafe class FragmentPageTests
{
    [Fact]
    public void Page_pool_fragment_netmem_sets_the_count_and_only_the_last_piece_put_recycles_the_page()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        pool.FragmentPage(page, 4);
        Assert.Equal(4, page.Value.PpRefCount);

        var before = pool.GetStats();
        for (int i = 0; i < 3; i++)
            pool.PutPage(page, allowDirect: true);
        // Three pieces back: one reference left, nothing recycled, nothing released.
        Assert.Equal(1, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats());

        pool.PutPage(page, allowDirect: true);
        Assert.Equal(0, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 1));
        Assert.Equal(page, pool.AllocPage()); // the recycled page comes back first, whole
        Assert.Equal(1, page.Value.PpRefCount);
        pool.RecycleDirect(page);
    }

    [Fact]
    public void A_driver_sets_a_bias_once_and_drains_the_pieces_it_never_handed_out_with_unref_as_mlx5_does()
    {
        // mlx5e_page_alloc_fragmented / mlx5e_page_release_fragmented: bias MLX5E_PAGECNT_BIAS_MAX, drain
        // bias - frags with page_pool_unref_netmem; the pieces still out recycle the page when they come back.
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        pool.FragmentPage(page, PagePool.BiasMax);
        const int handedOut = 3;
        var before = pool.GetStats();

        pool.PutPage(page); // one piece back before the drain, from the consumer thread without allowDirect
        OtherThread.Run(() => pool.PutPage(page)); // one from another thread

        // The driver is done with the page: it drops the references of the pieces it never handed out.
        long left = pool.UnrefPage(page, PagePool.BiasMax - handedOut);
        Assert.Equal(1, left);
        StatsAssert.Moved(before, pool.GetStats());

        OtherThread.Run(() => pool.PutPage(page)); // the last piece recycles the page through the ring
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 1));
        Assert.Equal(0, pool.InFlight - pool.GetStats().Pooled);
    }

    [Fact]
    public void When_every_piece_came_back_the_drain_leaves_the_driver_the_last_reference_to_put()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        pool.FragmentPage(page, 64);
        pool.PutPage(page);
        pool.PutPage(page);
        // Two pieces handed out and back: keep one reference for the driver, drain the rest, put the last one.
        Assert.Equal(1, pool.UnrefPage(page, 64 - 2 - 1));
        var before = pool.GetStats();
        pool.PutPage(page, allowDirect: true);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 1));
    }

    [Fact]
    public void A_drain_of_more_references_than_the_split_page_holds_throws_and_leaves_the_count()
    {
        // page_pool_unref_netmem may not take pp_ref_count below zero: the pool refuses and keeps the page.
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        pool.FragmentPage(page, 8);
        pool.PutPage(page);
        var e = Assert.Throws<InvalidOperationException>(() => pool.UnrefPage(page, 8));
        Assert.Contains("double put", e.Message);
        Assert.Equal(7, page.Value.PpRefCount);
        Assert.Equal(1, pool.UnrefPage(page, 6));
        pool.RecycleDirect(page);
        Assert.Equal(0, pool.InFlight - pool.GetStats().Pooled);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-1L)]
    [InlineData(long.MinValue)]
    [InlineData(PagePool.BiasMax + 1)]
    [InlineData(long.MaxValue)]
    public void Fragment_page_refuses_a_count_outside_one_to_bias_max_and_leaves_the_page_unchanged(long nr)
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => pool.FragmentPage(page, nr));
        Assert.Equal("nr", e.ParamName);
        Assert.Equal(1, page.Value.PpRefCount);
        pool.RecycleDirect(page);
    }

    [Fact]
    public void Fragment_page_refuses_a_page_already_split_or_shared()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        pool.FragmentPage(page, 2);
        var e = Assert.Throws<InvalidOperationException>(() => pool.FragmentPage(page, 8));
        Assert.Contains("only reference", e.Message);
        Assert.Equal(2, page.Value.PpRefCount);
        pool.PutPage(page);
        pool.PutPage(page);
        Assert.Equal(0, pool.InFlight - pool.GetStats().Pooled);
    }

    [Fact]
    public void Fragment_page_refuses_a_page_in_the_pool_and_a_page_of_another_pool()
    {
        using var pool = new PagePool(new PagePoolOptions());
        using var other = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        pool.RecycleDirect(page); // back in the alloc cache: pp_ref_count 0
        Assert.Throws<InvalidOperationException>(() => pool.FragmentPage(page, 2));
        Assert.Equal(0, page.Value.PpRefCount);

        var foreign = other.AllocPage();
        var e = Assert.Throws<InvalidOperationException>(() => pool.FragmentPage(foreign, 2));
        Assert.Contains("another pool", e.Message);
        Assert.Equal(1, foreign.Value.PpRefCount);
        other.RecycleDirect(foreign);
    }

    [Fact]
    public void Fragment_page_refuses_the_page_the_pool_cuts_its_own_fragments_from()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var piece = pool.AllocFrag(1000, out _);
        long count = piece.Value.PpRefCount;
        var e = Assert.Throws<InvalidOperationException>(() => pool.FragmentPage(piece, 2));
        Assert.Contains("AllocFrag", e.Message);
        Assert.Equal(count, piece.Value.PpRefCount);
        pool.PutPage(piece);

        // The shared cutter of the other threads is refused too.
        OtherThread.Run(() =>
        {
            var shared = pool.AllocFrag(1000, out _);
            Assert.Throws<InvalidOperationException>(() => pool.FragmentPage(shared, 2));
            pool.PutPage(shared);
        });
    }

    [Fact]
    public void Fragment_page_by_address_finds_the_page_from_any_byte()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        pool.FragmentPage(page.Address + 2048, 2);
        Assert.Equal(2, page.Value.PpRefCount);
        pool.PutPage(page.Address + 10);
        pool.PutPage(page.Address + 3000);
        Assert.Equal(0, page.Value.PpRefCount);
    }

    [Fact]
    public void The_consumer_handle_puts_pieces_with_one_atomic_each_and_the_last_recycles_direct()
    {
        // page_pool_put_netmem -> page_pool_unref_and_test on every piece; the last one recycles into the cache.
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        pool.FragmentPage(page, 3);
        var before = pool.GetStats();
        consumer.PutPage(page);
        consumer.RecycleDirect(page);
        Assert.Equal(1, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats());
        consumer.PutPage(page);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 1));
        var e = Assert.Throws<InvalidOperationException>(() => consumer.PutPage(page));
        Assert.Contains("double put", e.Message);
        Assert.Equal(0, page.Value.PpRefCount);
        Assert.Equal(page, consumer.AllocPage());
        consumer.RecycleDirect(page);
    }

    [Fact]
    public void A_split_page_whose_last_piece_comes_back_after_dispose_is_released_not_recycled()
    {
        var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        pool.FragmentPage(page, 2);
        consumer.PutPage(page);
        pool.Dispose();
        Assert.False(pool.IsFreed);
        Assert.Equal(1, pool.InFlight);
        pool.PutPage(page);
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void In_debug_mode_a_split_page_is_checked_and_recycled_once()
    {
        using var pool = new PagePool(new PagePoolOptions { DebugMode = true });
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        pool.FragmentPage(page, 4);
        var before = pool.GetStats();
        for (int i = 0; i < 4; i++)
            consumer.PutPage(page);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 1));
        Assert.Throws<InvalidOperationException>(() => consumer.PutPage(page)); // a fifth piece: double put
    }
}
