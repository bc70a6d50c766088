using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

[Collection(nameof(PoolTimingCollection))]
public unsafe class DisposeTests
{
    [Fact]
    public void Dispose_with_pages_in_flight_keeps_the_pool_until_another_thread_returns_the_last_page()
    {
        var pool = new PagePool(new PagePoolOptions());
        var held = new NetMemRef[100];
        Assert.Equal(100, pool.AllocPages(held));
        pool.PutPage(pool.AllocPage()); // something in the per-CPU cache/ring too
        pool.Dispose();
        Assert.True(pool.IsDisposed);
        Assert.False(pool.IsFreed);
        Assert.Equal(100, pool.GetStats().InFlight);
        Assert.Equal(0, pool.GetStats().Pooled);

        var releasedBefore = pool.GetStats().Release;
        OtherThread.Run(() =>
        {
            for (int i = 0; i < 99; i++)
                pool.PutPage(held[i], allowDirect: true);
        });
        Assert.False(pool.IsFreed);
        Assert.Equal(99, pool.GetStats().Release - releasedBefore);
        Assert.Equal(0, pool.GetStats().RecycleCached);
        OtherThread.Run(() => pool.PutPage(held[99]));
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.GetStats().InFlight);
        Assert.DoesNotContain(pool, PagePool.LivePools);
        Assert.Equal(0, pool.Provider.PagesInUse);
        Assert.Equal(0, pool.Provider.RegionCount);
    }

    [Fact]
    public void A_page_put_after_dispose_is_released_never_recycled()
    {
        var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        var a = consumer.AllocPage();
        var b = consumer.AllocPage();
        pool.Dispose();
        consumer.RecycleDirect(a);
        Assert.Equal(PageState.Free, a.State);
        Assert.Equal(0UL, a.Value.PpMagic);
        var before = pool.GetStats();
        pool.PutPages(new[] { b });
        Assert.Equal(before.RecycleRing, pool.GetStats().RecycleRing);
        Assert.True(pool.IsFreed);
        Assert.Throws<ObjectDisposedException>(() => pool.PutPage(b));
    }

    [Fact]
    public void A_stalled_shutdown_raises_a_warning_with_id_inflight_and_seconds()
    {
        var savedRetry = PagePool.ReleaseRetryInterval;
        var savedWarn = PagePool.StalledWarningInterval;
        PagePool.ReleaseRetryInterval = TimeSpan.FromMilliseconds(20);
        PagePool.StalledWarningInterval = TimeSpan.FromMilliseconds(50);
        try
        {
            var pool = new PagePool(new PagePoolOptions());
            var page = pool.AllocPage();
            var warned = new ManualResetEventSlim();
            StalledShutdownEventArgs? args = null;
            pool.StalledShutdownRaised += (_, e) => { args = e; warned.Set(); };
            pool.Dispose();
            Assert.True(warned.Wait(TimeSpan.FromSeconds(10)), "no stalled-shutdown warning");
            Assert.Equal(pool.Id, args!.PoolId);
            Assert.Equal(1, args.InFlight);
            Assert.True(args.Seconds >= 0);
            pool.PutPage(page);
            Assert.True(pool.IsFreed);
        }
        finally
        {
            PagePool.ReleaseRetryInterval = savedRetry;
            PagePool.StalledWarningInterval = savedWarn;
        }
    }

    [Fact]
    public void Dispose_twice_is_harmless()
    {
        var pool = new PagePool(new PagePoolOptions());
        pool.RecycleDirect(pool.AllocPage());
        pool.Dispose();
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void Allocations_from_other_threads_racing_Dispose_never_get_a_page_from_a_freed_pool()
    {
        // Two threads allocate and release one page at a time (so the pool often has nothing in flight, and once
        // a thread's per-CPU cache is empty its next refill takes a bulk from the provider), while the consumer
        // disposes. A page handed out must keep the pool alive until it is back; every page the pool took from
        // the provider must be given back.
        using var provider = new PageProvider();
        int fromFreedPool = 0, otherErrors = 0;
        Exception? firstError = null;
        for (int round = 0; round < 200; round++)
        {
            var pool = new PagePool(new PagePoolOptions { Provider = provider, PoolSize = 16 });
            long allocated = 0;
            var threads = new Thread[2];
            for (int t = 0; t < threads.Length; t++)
            {
                threads[t] = new Thread(() =>
                {
                    try
                    {
                        while (true)
                        {
                            NetMemRef p = pool.AllocPage();
                            if (p.IsNull)
                                continue;
                            if (pool.IsFreed)
                                Interlocked.Increment(ref fromFreedPool);
                            Interlocked.Increment(ref allocated);
                            // Release rather than recycle: refills keep going to the provider.
                            pool.ReleasePage(p);
                        }
                    }
                    catch (ObjectDisposedException)
                    {
                    }
                    catch (Exception e)
                    {
                        Interlocked.CompareExchange(ref firstError, e, null);
                        Interlocked.Increment(ref otherErrors);
                    }
                });
                threads[t].Start();
            }
            var spin = new SpinWait();
            while (Volatile.Read(ref allocated) < 20 + round % 50)
                spin.SpinOnce(sleep1Threshold: -1);
            pool.Dispose();
            foreach (Thread t in threads)
                Assert.True(t.Join(TimeSpan.FromSeconds(30)), "an allocating thread did not stop after Dispose");
            Assert.True(pool.IsFreed, $"round {round}: {pool.InFlight} pages in flight after every page came back");
            Assert.True(provider.PagesInUse == 0, $"round {round}: provider has {provider.PagesInUse} pages out; {pool.GetStats()}");
        }
        Assert.Equal(0, fromFreedPool);
        Assert.True(otherErrors == 0, $"{otherErrors} unexpected exceptions, the first: {firstError}");
    }

    [Fact]
    public void A_provider_take_outside_any_section_that_Dispose_saw_under_way_frees_the_pool_when_its_page_comes_back()
    {
        // Every per-CPU cache is held (ownership is sticky) by an idle thread, so one more thread's allocation takes
        // a page from the provider outside any section. Dispose runs while that take is inside its init callback,
        // so it cannot conclude that nothing is in flight; once the take is done and its page released, the pool
        // must be freed at once, not on the retry timer's next tick (made an hour here so that it cannot help).
        var savedRetry = PagePool.ReleaseRetryInterval;
        PagePool.ReleaseRetryInterval = TimeSpan.FromHours(1);
        using var provider = new PageProvider();
        Thread? taker = null;
        using var inCallback = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        PagePool? pool = null;
        var holders = new Thread[Environment.ProcessorCount];
        using var holdersDone = new ManualResetEventSlim();
        try
        {
            pool = new PagePool(new PagePoolOptions
            {
                Provider = provider,
                InitCallback = (_, _) =>
                {
                    if (Thread.CurrentThread != Volatile.Read(ref taker))
                        return;
                    inCallback.Set();
                    // No assertion here: an exception on this bare thread would end the test process.
                    proceed.Wait(TimeSpan.FromSeconds(30));
                },
            });
            using var holding = new CountdownEvent(holders.Length);
            for (int i = 0; i < holders.Length; i++)
            {
                holders[i] = new Thread(() =>
                {
                    pool.ReleasePage(pool.AllocPage()); // acquires a per-CPU cache and keeps it
                    holding.Signal();
                    holdersDone.Wait();
                });
                holders[i].Start();
            }
            Assert.True(holding.Wait(TimeSpan.FromSeconds(30)));

            NetMemRef taken = default;
            Exception? takeError = null;
            var t = new Thread(() =>
            {
                try
                {
                    taken = pool.AllocPage();
                }
                catch (Exception e)
                {
                    takeError = e;
                }
            });
            Volatile.Write(ref taker, t);
            t.Start();
            Assert.True(inCallback.Wait(TimeSpan.FromSeconds(30)), "the allocation did not reach the provider");
            pool.Dispose();
            Assert.False(pool.IsFreed); // the take under way may still hand out a page
            proceed.Set();
            Assert.True(t.Join(TimeSpan.FromSeconds(30)));
            Assert.Null(takeError);
            Assert.False(taken.IsNull);
            Assert.Equal(1, pool.InFlight);
            Assert.False(pool.IsFreed);
            pool.ReleasePage(taken);
            Assert.True(pool.IsFreed, $"{pool.InFlight} pages in flight, yet the pool waits for its retry timer");
            Assert.Equal(0, provider.PagesInUse);
        }
        finally
        {
            proceed.Set();
            holdersDone.Set();
            foreach (Thread h in holders)
                h?.Join();
            PagePool.ReleaseRetryInterval = savedRetry;
        }
    }

    [Fact]
    public void A_shared_provider_outlives_its_pools()
    {
        using var provider = new PageProvider();
        var a = new PagePool(new PagePoolOptions { Provider = provider });
        var b = new PagePool(new PagePoolOptions { Provider = provider });
        var pa = a.AllocPage();
        var pb = b.AllocPage();
        Assert.Equal(128, provider.PagesInUse);
        a.RecycleDirect(pa);
        a.Dispose();
        Assert.Equal(64, provider.PagesInUse);
        b.RecycleDirect(pb);
        b.Dispose();
        Assert.Equal(0, provider.PagesInUse);
        var p = provider.Take();
        Assert.False(p.IsNull);
        provider.Give(p);
    }
}

[CollectionDefinition(nameof(PoolTimingCollection), DisableParallelization = true)]
public sealed class PoolTimingCollection;
