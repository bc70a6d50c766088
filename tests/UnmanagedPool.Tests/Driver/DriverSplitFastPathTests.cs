using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// The calls of a driver that splits pages itself (mlx5's striding RQ), in their ordinary case and at the edges of
/// it: <c>page_pool_fragment_netmem</c>, <c>page_pool_unref_netmem</c> (no atomic when pp_ref_count equals nr),
/// <c>page_pool_put_unrefed_netmem</c> and the last put of a split page (<c>page_pool_unref_and_test</c> of a count
/// of 1), each with the exact pp_ref_count, pages held and stats the kernel's semantics give, in debug mode (every
/// check) and out of it.
/// </summary>
public unsafe class DriverSplitFastPathTests
{
    private static PagePool NewPool(bool debug) => new(new PagePoolOptions { PoolSize = 64, DebugMode = debug });

    /// <summary>Pages the users hold: out of the provider and not in the pool's caches or ring.</summary>
    private static long Held(PagePool pool) => pool.GetStats().InFlight - pool.GetStats().Pooled;

    [Theory]
    [InlineData(false, 1L)]
    [InlineData(false, 2L)]
    [InlineData(false, 64L)]
    [InlineData(false, PagePool.BiasMax >> 1)]
    [InlineData(false, PagePool.BiasMax)]
    [InlineData(true, 64L)]
    [InlineData(true, PagePool.BiasMax)]
    public void Page_pool_unref_netmem_of_every_reference_left_returns_0_leaves_the_count_at_1_and_put_unrefed_recycles_direct(bool debug, long nr)
    {
        using var pool = NewPool(debug);
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        pool.FragmentPage(page, nr);
        Assert.Equal(nr, page.Value.PpRefCount);
        var before = pool.GetStats();

        // page_pool_unref_netmem: atomic_long_read(pp_ref_count) == nr, so the caller held every reference: 0 comes
        // back and the count is set to 1, the reference the caller now holds alone. Nothing is recycled yet.
        Assert.Equal(0, pool.UnrefPage(page, nr));
        Assert.Equal(1, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats());
        Assert.Equal(1, Held(pool));

        // page_pool_put_unrefed_netmem with allow_direct: into the alloc cache, count 0, the next allocation takes it.
        consumer.PutUnrefedPage(page, -1, allowDirect: true);
        Assert.Equal(0, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 1));
        Assert.Equal(0, Held(pool));
        Assert.Equal(page, consumer.AllocPage());
        Assert.Equal(1, page.Value.PpRefCount);
        consumer.RecycleDirect(page);
        StatsAssert.Consistent(pool.GetStats());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Page_pool_put_unrefed_netmem_without_allow_direct_goes_through_the_ring_once(bool debug)
    {
        using var pool = NewPool(debug);
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        pool.FragmentPage(page, 64);
        Assert.Equal(0, pool.UnrefPage(page, 64));
        var before = pool.GetStats();

        consumer.PutUnrefedPage(page, -1, allowDirect: false);
        Assert.Equal(0, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 1));
        Assert.Equal(0, Held(pool));

        // Back in the pool (count 0): a second put of the same page is refused and moves nothing.
        Assert.Throws<InvalidOperationException>(() => consumer.PutUnrefedPage(page, -1, allowDirect: false));
        Assert.Throws<InvalidOperationException>(() => consumer.PutUnrefedPage(page, -1, allowDirect: true));
        Assert.Equal(0, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 1));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Page_pool_unref_netmem_of_fewer_references_than_held_leaves_the_rest_and_a_later_drain_of_all_returns_0(bool debug)
    {
        using var pool = NewPool(debug);
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        pool.FragmentPage(page, 64);
        var before = pool.GetStats();

        // pp_ref_count 64 != nr 62: atomic_long_sub_return, 2 left (two pieces out with users).
        Assert.Equal(2, pool.UnrefPage(page, 62));
        Assert.Equal(2, page.Value.PpRefCount);
        // One piece comes back: page_pool_unref_and_test of a count of 2, one left, nothing recycled.
        consumer.PutPage(page);
        Assert.Equal(1, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats());
        // The driver takes the last reference back with page_pool_unref_netmem(page, 1): the count equals nr.
        Assert.Equal(0, pool.UnrefPage(page, 1));
        Assert.Equal(1, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats());
        Assert.Equal(1, Held(pool));
        consumer.PutUnrefedPage(page, -1, allowDirect: true);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 1));
        Assert.Equal(0, Held(pool));
    }

    [Theory]
    [InlineData(false, 2, true)]
    [InlineData(false, 4, true)]
    [InlineData(false, 4, false)]
    [InlineData(true, 4, true)]
    [InlineData(true, 4, false)]
    public void The_last_put_of_a_split_page_is_page_pool_unref_and_test_of_a_count_of_1_and_recycles_it(bool debug, int pieces, bool allowDirect)
    {
        using var pool = NewPool(debug);
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        pool.FragmentPage(page, 64);
        Assert.Equal(pieces, pool.UnrefPage(page, 64 - pieces));
        var before = pool.GetStats();

        // Every put but the last drops one reference (page_pool_unref_and_test is false): no recycle, page held.
        for (int k = 1; k < pieces; k++)
        {
            consumer.PutPage(page, -1, allowDirect);
            Assert.Equal(pieces - k, page.Value.PpRefCount);
            StatsAssert.Moved(before, pool.GetStats());
            Assert.Equal(1, Held(pool));
        }

        // The last: the count reads 1, the putter holds the only reference, page_pool_unref_and_test is true.
        consumer.PutPage(page, -1, allowDirect);
        Assert.Equal(0, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats(), (allowDirect ? "RecycleCached" : "RecycleRing", 1));
        Assert.Equal(0, Held(pool));

        // One more put of the recycled page is a double put: refused, nothing moves, the count stays 0.
        Assert.Throws<InvalidOperationException>(() => consumer.PutPage(page, -1, allowDirect));
        Assert.Equal(0, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats(), (allowDirect ? "RecycleCached" : "RecycleRing", 1));
        StatsAssert.Consistent(pool.GetStats());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_last_two_holders_dropping_concurrently_get_1_and_0_and_the_count_ends_at_1(bool debug)
    {
        // page_pool_unref_netmem's "last two fragment users call page_pool_unref_page() concurrently": whichever
        // order the threads take (one reads 1 == nr and needs no atomic, or both subtract and one sees 0), one gets
        // 1, the other 0, and the count is reset to 1 for the one that got 0. Any interleaving must give this.
        using var pool = NewPool(debug);
        var page = pool.AllocPage();
        using var barrier = new Barrier(2);
        for (int round = 0; round < 300; round++)
        {
            pool.FragmentPage(page, 2);
            long other = -1;
            var t = new Thread(() =>
            {
                barrier.SignalAndWait();
                other = pool.UnrefPage(page, 1);
            });
            t.Start();
            barrier.SignalAndWait();
            long mine = pool.UnrefPage(page, 1);
            t.Join();
            Assert.Equal(1, Math.Max(mine, other));
            Assert.Equal(0, Math.Min(mine, other));
            Assert.Equal(1, page.Value.PpRefCount);
        }
        var before = pool.GetStats();
        pool.PutPage(page, allowDirect: true);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 1));
        Assert.Equal(0, Held(pool));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_page_back_in_the_pool_is_refused_by_unref_fragment_and_put_unrefed_and_handed_out_once(bool debug)
    {
        using var pool = NewPool(debug);
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        consumer.RecycleDirect(page);
        Assert.Equal(0, page.Value.PpRefCount);
        var before = pool.GetStats();

        // pp_ref_count 0: no reference to drop, none to split, none to put.
        Assert.Throws<InvalidOperationException>(() => pool.UnrefPage(page, 1));
        Assert.Throws<InvalidOperationException>(() => pool.FragmentPage(page, 2));
        Assert.Throws<InvalidOperationException>(() => consumer.PutUnrefedPage(page, -1, allowDirect: true));
        Assert.Equal(0, page.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats());

        // The page is in the alloc cache once: the next allocation takes it, the one after takes another page.
        var first = consumer.AllocPage();
        var second = consumer.AllocPage();
        Assert.Equal(page, first);
        Assert.NotEqual(first, second);
        Assert.Equal(1, first.Value.PpRefCount);
        consumer.RecycleDirect(first);
        consumer.RecycleDirect(second);
        Assert.Equal(0, Held(pool));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_unref_through_the_bias_of_the_fragment_page_the_pool_is_cutting_throws_and_keeps_the_count(bool debug)
    {
        using var pool = NewPool(debug);
        var consumer = pool.BindConsumer();
        var piece = consumer.AllocFrag(1024, out _);
        long count = piece.Value.PpRefCount;
        var before = pool.GetStats();

        // Every reference the count shows, and one: both would take the bias the pool holds on the page it cuts.
        Assert.Throws<InvalidOperationException>(() => pool.UnrefPage(piece, count));
        Assert.Throws<InvalidOperationException>(() => pool.UnrefPage(piece, 2));
        Assert.Equal(count, piece.Value.PpRefCount);
        StatsAssert.Moved(before, pool.GetStats());

        // The piece still goes back as one: from the pool's users count (page_pool_alloc_frag's pagecnt_bias
        // scheme), so pp_ref_count keeps the bias, and the frag state has no user left.
        consumer.PutPage(piece);
        Assert.Equal(count, piece.Value.PpRefCount);
        Assert.Equal(0, pool.ConsumerFragState.Users);
    }

    [Fact]
    public void Another_pools_page_and_a_null_page_are_refused_by_every_driver_call_and_keep_their_count()
    {
        using var pool = NewPool(debug: false);
        using var other = NewPool(debug: false);
        var consumer = pool.BindConsumer();
        var foreign = other.AllocPage();
        other.FragmentPage(foreign, 2);
        var before = pool.GetStats();

        Assert.Contains("another pool", Assert.Throws<InvalidOperationException>(() => pool.UnrefPage(foreign, 2)).Message);
        Assert.Contains("another pool", Assert.Throws<InvalidOperationException>(() => pool.FragmentPage(foreign, 4)).Message);
        Assert.Throws<InvalidOperationException>(() => consumer.PutPage(foreign));
        Assert.Equal(2, foreign.Value.PpRefCount);
        Assert.Equal(0, other.UnrefPage(foreign, 2));
        Assert.Equal(1, foreign.Value.PpRefCount);
        Assert.Contains("another pool", Assert.Throws<InvalidOperationException>(() => consumer.PutUnrefedPage(foreign, -1, true)).Message);
        Assert.Equal(1, foreign.Value.PpRefCount);

        Assert.Throws<InvalidOperationException>(() => pool.UnrefPage(NetMemRef.Null, 1));
        Assert.Throws<InvalidOperationException>(() => pool.FragmentPage(NetMemRef.Null, 2));
        Assert.Throws<InvalidOperationException>(() => consumer.PutUnrefedPage(NetMemRef.Null, -1, true));
        StatsAssert.Moved(before, pool.GetStats());

        other.RecycleDirect(foreign);
        Assert.Equal(0, Held(other));
    }

    [Fact]
    public void After_dispose_the_driver_calls_keep_their_semantics_the_unrefed_page_is_released_and_the_freed_pool_refuses_it()
    {
        var pool = NewPool(debug: false);
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        pool.Dispose();
        Assert.False(pool.IsFreed); // the page is still out
        Assert.Equal(1, pool.InFlight);

        pool.FragmentPage(page, 4);
        Assert.Equal(4, page.Value.PpRefCount);
        Assert.Equal(1, pool.UnrefPage(page, 3));
        Assert.Equal(0, pool.UnrefPage(page, 1));
        Assert.Equal(1, page.Value.PpRefCount);
        // page_pool_put_unrefed_netmem of a destroying pool: the page goes back to the provider, not to a cache.
        consumer.PutUnrefedPage(page, -1, allowDirect: true);
        Assert.Equal(0, pool.InFlight);
        Assert.True(pool.IsFreed);

        // The pool is freed: its descriptors are not touched again.
        Assert.Throws<ObjectDisposedException>(() => pool.UnrefPage(page, 1));
        Assert.Throws<ObjectDisposedException>(() => pool.FragmentPage(page, 2));
        Assert.Throws<ObjectDisposedException>(() => consumer.PutUnrefedPage(page, -1, allowDirect: true));
    }
}
