using System.Runtime.InteropServices;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

/// <summary>Bad input gets a clear exception and leaves the pool whole.</summary>
public unsafe class BadInputTests
{
    private static void AssertPoolStillWorks(PagePool pool)
    {
        var before = pool.GetStats();
        var pages = new NetMemRef[200];
        Assert.Equal(pages.Length, pool.AllocPages(pages));
        Assert.Equal(pages.Length, pages.Select(p => (nint)p.Descriptor).Distinct().Count());
        foreach (var p in pages)
            pool.RecycleDirect(p);
        var after = pool.GetStats();
        StatsAssert.Consistent(after);
        Assert.Equal(after.Pooled, after.InFlight);
        Assert.True(after.Hold >= before.Hold);
    }

    [Fact]
    public void Putting_a_page_that_is_not_a_pool_page_throws_naming_the_address()
    {
        using var provider = new PageProvider();
        using var pool = new PagePool(new PagePoolOptions());
        var foreign = provider.Take();
        var e = Assert.Throws<InvalidOperationException>(() => pool.PutPage(foreign));
        Assert.Contains($"0x{(nint)foreign.Address:x}", e.Message);
        Assert.Contains("not a page-pool page", e.Message);
        provider.Give(foreign);
        AssertPoolStillWorks(pool);
    }

    [Fact]
    public void Putting_another_pools_page_throws_and_both_pools_stay_consistent()
    {
        using var a = new PagePool(new PagePoolOptions());
        using var b = new PagePool(new PagePoolOptions());
        var page = b.AllocPage();
        var e = Assert.Throws<InvalidOperationException>(() => a.PutPage(page));
        Assert.Contains("another pool", e.Message);
        Assert.Contains($"0x{(nint)page.Address:x}", e.Message);
        Assert.Equal(1, page.Value.PpRefCount);
        b.RecycleDirect(page);
        AssertPoolStillWorks(a);
        AssertPoolStillWorks(b);
    }

    [Fact]
    public void A_second_put_of_the_same_page_is_detected_and_the_page_is_not_handed_out_twice()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var page = consumer.AllocPage();
        consumer.RecycleDirect(page);
        var before = pool.GetStats();
        var e = Assert.Throws<InvalidOperationException>(() => consumer.RecycleDirect(page));
        Assert.Contains("double put", e.Message);
        Assert.Throws<InvalidOperationException>(() => pool.PutPage(page));
        Assert.Throws<InvalidOperationException>(() => OtherThread.Run(() => pool.PutPage(page)));
        Assert.Throws<InvalidOperationException>(() => pool.PutPages(new[] { page }));
        Assert.Throws<InvalidOperationException>(() => pool.ReleasePage(page));
        StatsAssert.Moved(before, pool.GetStats());
        AssertPoolStillWorks(pool);
    }

    [Fact]
    public void Put_pages_with_one_bad_page_puts_none_of_them()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var good = new[] { pool.AllocPage(), pool.AllocPage(), NetMemRef.Null };
        var before = pool.GetStats();
        Assert.Throws<InvalidOperationException>(() => pool.PutPages(good));
        StatsAssert.Moved(before, pool.GetStats());
        Assert.Equal(1, good[0].Value.PpRefCount);
        pool.PutPages(good.AsSpan(0, 2));
        AssertPoolStillWorks(pool);
    }

    [Fact]
    public void A_null_page_and_foreign_addresses_are_rejected()
    {
        using var pool = new PagePool(new PagePoolOptions());
        Assert.Throws<InvalidOperationException>(() => pool.PutPage(NetMemRef.Null));
        byte* stack = stackalloc byte[64];
        nint stackAddress = (nint)stack;
        var e = Assert.Throws<InvalidOperationException>(() => pool.PutPage((byte*)stackAddress));
        Assert.Contains($"0x{stackAddress:x}", e.Message);
        void* block = NativeMemory.AlignedAlloc(1 << 21, 1 << 21);
        try
        {
            nint b = (nint)block;
            Assert.Throws<InvalidOperationException>(() => pool.RecycleDirect((byte*)b + 100));
            Assert.Throws<InvalidOperationException>(() => pool.ReleasePage((byte*)b));
        }
        finally
        {
            NativeMemory.AlignedFree(block);
        }
        Assert.Throws<InvalidOperationException>(() => pool.PutPage((byte*)null));
        AssertPoolStillWorks(pool);
    }

    [Fact]
    public void Allocating_after_dispose_throws_object_disposed()
    {
        var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        consumer.RecycleDirect(consumer.AllocPage());
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.AllocPage());
        Assert.Throws<ObjectDisposedException>(() => consumer.AllocPage());
        Assert.Throws<ObjectDisposedException>(() => OtherThread.Run(() => pool.AllocPage()));
        Assert.Throws<ObjectDisposedException>(() => pool.BindConsumer());
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.GetStats().InFlight);
    }

    [Fact]
    public void Unref_page_rejects_non_positive_counts_and_underflow()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.UnrefPage(page, 0));
        Assert.Throws<InvalidOperationException>(() => pool.UnrefPage(page, 2));
        Assert.Equal(1, page.Value.PpRefCount);
        pool.RefPage(page);
        pool.RefPage(page);
        Assert.Equal(1, pool.UnrefPage(page, 2));
        pool.RecycleDirect(page);
        AssertPoolStillWorks(pool);
    }

    [Fact]
    public void Release_page_needs_the_only_reference()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var page = pool.AllocPage();
        pool.RefPage(page);
        Assert.Throws<InvalidOperationException>(() => pool.ReleasePage(page));
        pool.PutPage(page);
        pool.ReleasePage(page);
        AssertPoolStillWorks(pool);
    }
}
