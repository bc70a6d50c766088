using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// <see cref="PagePool.UnrefPage(NetMemRef, long)"/> to zero and the way back (the kernel's
/// <c>page_pool_put_unrefed_netmem</c>), and an unref that would eat the bias of the fragment page being cut.
/// </summary>
public class UnrefedPageTests
{
    private static PagePool NewPool(bool debug = false) => new(new PagePoolOptions { PoolSize = 64, DebugMode = debug });

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_page_unreferenced_to_zero_goes_back_with_PutPage_as_the_kernel_resets_its_count_to_one(bool debug)
    {
        var pool = NewPool(debug);
        NetMemRef page = pool.AllocPage();
        pool.RefPage(page);
        Assert.Equal(1, pool.UnrefPage(page, 1));
        Assert.Equal(0, pool.UnrefPage(page, 1));
        pool.PutPage(page);
        pool.Dispose();
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    public void A_page_unreferenced_to_zero_goes_back_with_PutUnrefedPage_and_only_once(bool debug, bool allowDirect)
    {
        var pool = NewPool(debug);
        NetMemRef page = pool.AllocPage();
        pool.RefPage(page);
        pool.RefPage(page);
        Assert.Equal(0, pool.UnrefPage(page, 3));
        pool.PutUnrefedPage(page, -1, allowDirect);
        Assert.Throws<InvalidOperationException>(() => pool.PutUnrefedPage(page, -1, allowDirect));
        if (allowDirect)
        {
            // Recycled into the alloc cache: the next allocation takes it.
            Assert.Equal(page, pool.AllocPage());
            pool.PutPage(page);
        }
        Assert.Equal(0, pool.GetStats().InFlight - pool.GetStats().Pooled);
        pool.Dispose();
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
    }

    [Fact]
    public void PutUnrefedPage_refuses_a_page_whose_references_are_still_held()
    {
        var pool = NewPool();
        NetMemRef page = pool.AllocPage();
        pool.RefPage(page);
        Assert.Throws<InvalidOperationException>(() => pool.PutUnrefedPage(page, -1, false));
        pool.PutPage(page);
        pool.PutPage(page);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void PutUnrefedPage_on_another_thread_and_on_the_consumer_handle_recycle_the_page()
    {
        var pool = NewPool();
        PagePoolConsumer consumer = pool.BindConsumer();
        NetMemRef a = consumer.AllocPage();
        NetMemRef b = consumer.AllocPage();
        Assert.Equal(0, pool.UnrefPage(a, 1));
        Assert.Equal(0, pool.UnrefPage(b, 1));
        OtherThread.Run(() => pool.PutUnrefedPage(a, -1, false));
        consumer.PutUnrefedPage(b, -1, true);
        Assert.Equal(b, consumer.AllocPage());
        consumer.RecycleDirect(b);
        pool.Dispose();
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void UnrefPage_of_the_pool_bias_on_the_fragment_page_being_cut_is_refused_and_cutting_stays_sound(bool debug)
    {
        var pool = NewPool(debug);
        PagePoolConsumer consumer = pool.BindConsumer();
        NetMemRef piece = consumer.AllocFrag(256, out int offset);
        Assert.Throws<InvalidOperationException>(() => pool.UnrefPage(piece, PagePool.BiasMax));
        Assert.Equal(PagePool.BiasMax, piece.Value.PpRefCount);
        NetMemRef next = consumer.AllocFrag(256, out int nextOffset);
        Assert.Equal(piece, next);
        Assert.NotEqual(offset, nextOffset);
        pool.PutPage(piece);
        pool.PutPage(next);
        pool.Dispose();
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
    }

    [Fact]
    public void UnrefPage_of_more_than_the_pieces_out_on_a_fragment_page_from_another_thread_is_refused()
    {
        var pool = NewPool();
        NetMemRef piece = pool.AllocFrag(256, out _);
        OtherThread.Run(() => Assert.Throws<InvalidOperationException>(() => pool.UnrefPage(piece, PagePool.BiasMax - 1)));
        Assert.Equal(PagePool.BiasMax, piece.Value.PpRefCount);
        pool.PutPage(piece);
        pool.Dispose();
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
    }
}
