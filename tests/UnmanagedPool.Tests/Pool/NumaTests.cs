using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

public unsafe class NumaTests
{
    [Fact]
    public void Pages_from_the_old_node_are_waived_at_refill_after_update_nid()
    {
        using var pool = new PagePool(new PagePoolOptions { NumaNode = 0 });
        var pages = new NetMemRef[64];
        Assert.Equal(64, pool.AllocPages(pages));
        Assert.All(pages, p => Assert.Equal(0, p.Nid));
        pool.PutPages(pages.AsSpan(0, 32)); // per-CPU cache / ring
        var before = pool.GetStats();
        pool.UpdateNid(1);
        Assert.Equal(1, pool.Nid);
        var afterUpdate = pool.GetStats();
        Assert.Equal(0, afterUpdate.Release - before.Release); // alloc cache was empty; per-CPU pages moved to the ring

        var fresh = pool.AllocPage();
        var after = pool.GetStats();
        Assert.Equal(1, after.AllocWaive - before.AllocWaive);
        Assert.Equal(1, after.Release - before.Release);
        Assert.Equal(1, after.AllocSlow - before.AllocSlow);
        Assert.Equal(1, fresh.Nid);
        pool.RecycleDirect(fresh);
        pool.PutPages(pages.AsSpan(32));
    }

    [Fact]
    public void Update_nid_releases_the_alloc_cache_and_must_run_on_the_consumer()
    {
        using var pool = new PagePool(new PagePoolOptions());
        pool.RecycleDirect(pool.AllocPage());
        Assert.Equal(64, pool.GetStats().Pooled);
        Assert.Throws<InvalidOperationException>(() => OtherThread.Run(() => pool.UpdateNid(0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.UpdateNid(-5));
        pool.UpdateNid(0);
        var s = pool.GetStats();
        Assert.Equal(64, s.Release);
        Assert.Equal(0, s.InFlight);
    }
}
