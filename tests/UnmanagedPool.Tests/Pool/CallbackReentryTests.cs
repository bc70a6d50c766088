using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

/// <summary>
/// An init callback that calls back into the pool while the slow path sets pages up (a Dispose, a recycle that
/// fills the alloc cache, an allocation from another pool): nothing hangs, no page is lost or handed out twice,
/// and a disposed pool is freed once its pages are back. Each scenario runs on its own thread with a time limit,
/// so a regression fails instead of hanging the run.
/// </summary>
[Collection(nameof(PoolTimingCollection))]
public unsafe class CallbackReentryTests
{
    private static void RunWithin(TimeSpan limit, Action body)
    {
        Exception? error = null;
        var t = new Thread(() =>
        {
            try
            {
                body();
            }
            catch (Exception e)
            {
                error = e;
            }
        }) { IsBackground = true };
        t.Start();
        Assert.True(t.Join(limit), $"the scenario did not finish within {limit.TotalSeconds} s");
        if (error != null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
    }

    private static void WaitFreed(PagePool pool)
    {
        // The retry timer runs every second.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!pool.IsFreed && DateTime.UtcNow < deadline)
            Thread.Sleep(20);
        Assert.True(pool.IsFreed, $"pool not freed: {pool.InFlight} in flight");
    }

    [Fact]
    public void Dispose_from_an_init_callback_of_an_uncached_allocation_returns_and_the_pool_is_freed_after_it()
    {
        // Another thread allocates: its per-CPU section refills from the provider and runs the init callback, which
        // allocates again (nested in the section, so with no per-CPU cache: straight to the provider), and that
        // allocation's init callback disposes the pool.
        using var provider = new PageProvider();
        PagePool? pool = null;
        int depth = 0;
        bool armed = true;
        pool = new PagePool(new PagePoolOptions
        {
            Provider = provider,
            InitCallback = (_, _) =>
            {
                if (!armed)
                    return;
                if (depth == 0)
                {
                    depth++;
                    try
                    {
                        NetMemRef nested = pool!.AllocPage();
                        Assert.False(nested.IsNull);
                        pool.ReleasePage(nested);
                    }
                    finally
                    {
                        depth--;
                        armed = false;
                    }
                    return;
                }
                pool!.Dispose();
            },
        });
        RunWithin(TimeSpan.FromSeconds(30), () =>
            // The outer allocation finds the pool disposed once its bulk is set up: it gives the bulk back.
            Assert.Throws<ObjectDisposedException>(() => pool.AllocPage()));
        Assert.True(pool.IsDisposed);
        WaitFreed(pool);
        Assert.Equal(0, provider.PagesInUse);
    }

    [Fact]
    public void Dispose_from_an_init_callback_nested_in_another_pools_allocation_does_not_hang()
    {
        // An allocation of A runs A's init callback, which allocates from B; B's init callback disposes A.
        using var provider = new PageProvider();
        PagePool? a = null, b = null;
        bool armed = true;
        b = new PagePool(new PagePoolOptions
        {
            Provider = provider,
            InitCallback = (_, _) =>
            {
                if (armed)
                {
                    armed = false;
                    a!.Dispose();
                }
            },
        });
        bool outer = true;
        a = new PagePool(new PagePoolOptions
        {
            Provider = provider,
            InitCallback = (_, _) =>
            {
                if (!outer)
                    return;
                outer = false;
                NetMemRef fromB = b.AllocPage();
                b.ReleasePage(fromB);
            },
        });
        RunWithin(TimeSpan.FromSeconds(30), () => Assert.Throws<ObjectDisposedException>(() => a.AllocPage()));
        WaitFreed(a);
        b.Dispose();
        Assert.True(b.IsFreed);
        Assert.Equal(0, provider.PagesInUse);
    }

    [Fact]
    public void Dispose_from_an_init_callback_of_the_consumers_own_slow_path_frees_the_pool_once_the_bulk_is_back()
    {
        using var provider = new PageProvider();
        PagePool? pool = null;
        int calls = 0;
        pool = new PagePool(new PagePoolOptions
        {
            Provider = provider,
            InitCallback = (_, _) =>
            {
                if (++calls == 10)
                    pool!.Dispose();
            },
        });
        // The nine pages set up before the callback are counted in flight, so Dispose does not free the pool under
        // the allocation; the allocation then gives the whole bulk back and throws.
        Assert.Throws<ObjectDisposedException>(() => pool.AllocPage());
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
        Assert.Equal(0, provider.PagesInUse);
    }

    [Fact]
    public void Dispose_from_the_init_callback_of_the_first_page_of_the_consumers_slow_path_does_not_free_the_pool_under_the_bulk()
    {
        // Nothing is counted in flight yet when the first page's callback disposes: the bulk being set up must keep
        // the pool alive all the same, and the pool is freed once the allocation has given the bulk back.
        using var provider = new PageProvider();
        PagePool? pool = null;
        int calls = 0;
        bool freedInCallback = false, freedDuringSetup = false;
        pool = new PagePool(new PagePoolOptions
        {
            Provider = provider,
            InitCallback = (_, _) =>
            {
                if (++calls == 1)
                {
                    pool!.Dispose();
                    freedInCallback = pool.IsFreed;
                }
                else
                {
                    freedDuringSetup |= pool!.IsFreed;
                }
            },
        });
        Assert.Throws<ObjectDisposedException>(() => pool.AllocPage());
        Assert.False(freedInCallback, "Dispose freed the pool while its first page was being set up");
        Assert.False(freedDuringSetup, "pages were set up for a pool already freed");
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
        Assert.Equal(0, provider.PagesInUse);
    }

    [Fact]
    public void An_init_callback_that_fills_the_alloc_cache_does_not_overflow_it()
    {
        using var provider = new PageProvider();
        PagePool? pool = null;
        NetMemRef[]? toRecycle = null;
        pool = new PagePool(new PagePoolOptions
        {
            Provider = provider,
            InitCallback = (_, _) =>
            {
                if (toRecycle is { } pages)
                {
                    toRecycle = null;
                    // The consumer's own thread: these fill the alloc cache (and spill to the ring) while the slow
                    // path still has a bulk to put there.
                    foreach (NetMemRef p in pages)
                        pool!.RecycleDirect(p);
                }
            },
        });
        var held = new NetMemRef[192];
        Assert.Equal(192, pool.AllocPages(held));   // three bulks of 64: the alloc cache is empty again
        toRecycle = held;
        NetMemRef fresh = pool.AllocPage();
        Assert.False(fresh.IsNull);
        PagePoolStats s = pool.GetStats();
        StatsAssert.Consistent(s);
        Assert.Equal(s.InFlight, s.Pooled + 1);
        Assert.Equal(s.InFlight, provider.PagesInUse);
        // Every pooled page comes out once.
        var seen = new HashSet<nint> { (nint)fresh.Address };
        for (long i = 0; i < s.Pooled; i++)
        {
            NetMemRef p = pool.AllocPage();
            Assert.True(seen.Add((nint)p.Address), $"page {(nint)p.Address:x} handed out twice");
        }
        pool.Dispose();
    }
}
