using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

public unsafe class PagePoolSmokeTests
{
    [Fact]
    public void A_page_goes_round_the_fast_path_and_the_ring_and_the_pool_frees_itself_on_dispose()
    {
        var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var pages = new NetMemRef[200];
        for (int i = 0; i < pages.Length; i++)
        {
            pages[i] = consumer.AllocPage();
            Assert.False(pages[i].IsNull);
            Assert.True(pages[i].IsPagePool);
            pages[i].AsSpan()[0] = (byte)i;
        }
        for (int i = 0; i < 100; i++)
            consumer.RecycleDirect(pages[i]);
        var t = new Thread(() => { for (int i = 100; i < 200; i++) pool.PutPage(pages[i]); });
        t.Start(); t.Join();
        var s = pool.GetStats();
        Assert.Equal(256, s.InFlight);
        Assert.Equal(100, s.RecycleCached + s.RecycleCacheFull);
        Assert.Equal(100 + s.RecycleCacheFull, s.RecycleRing);
        for (int i = 0; i < 200; i++)
            pages[i] = consumer.AllocPage();
        foreach (var p in pages) consumer.RecycleDirect(p);
        Assert.Throws<InvalidOperationException>(() => consumer.RecycleDirect(pages[0]));
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.GetStats().InFlight);
    }
}
