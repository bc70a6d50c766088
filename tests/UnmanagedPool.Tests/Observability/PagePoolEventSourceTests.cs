using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Observability;

public class PagePoolEventSourceTests
{
    private sealed class Listener : EventListener
    {
        public readonly ConcurrentQueue<EventWrittenEventArgs> Events = new();

        public Listener(EventLevel level, EventKeywords keywords) =>
            EnableEvents(PagePoolEventSource.Log, level, keywords);

        protected override void OnEventWritten(EventWrittenEventArgs e) => Events.Enqueue(e);

        public List<EventWrittenEventArgs> For(long poolId, string name) =>
            Events.Where(e => e.EventName == name && e.Payload is { Count: > 0 } && Convert.ToInt64(e.Payload[e.EventName == "PoolStats" ? 1 : 0]) == poolId).ToList();
    }

    [Fact]
    public void The_event_source_is_named_for_dotnet_trace_and_its_manifest_builds()
    {
        Assert.Equal("UnmanagedPool-PagePool", PagePoolEventSource.Log.Name);
        string? manifest = EventSource.GenerateManifest(typeof(PagePoolEventSource), "UnmanagedPool.dll", EventManifestOptions.Strict);
        Assert.NotNull(manifest);
        Assert.Contains("StateHold", manifest);
        Assert.Contains("PoolStats", manifest);
    }

    [Fact]
    public unsafe void A_pool_lifetime_writes_created_state_hold_state_release_release_and_destroyed_with_named_payloads()
    {
        using var listener = new Listener(EventLevel.Verbose, (EventKeywords)(-1));
        var pool = new PagePool(new PagePoolOptions { Name = "es-lifetime" });
        var consumer = pool.BindConsumer();
        var pages = new NetMemRef[150];
        for (int i = 0; i < pages.Length; i++)
            pages[i] = consumer.AllocPage();
        ulong released = (ulong)pages[0].Address; // read now: the region is freed with the pool
        pool.ReleasePage(pages[0]);
        for (int i = 1; i < pages.Length; i++)
            consumer.RecycleDirect(pages[i]);
        pool.Dispose();
        Assert.True(pool.IsFreed);

        var created = Assert.Single(listener.For(pool.Id, "PoolCreated"));
        Assert.Equal(["poolId", "name", "order", "poolSize", "flags", "nid"], created.PayloadNames);
        Assert.Equal("es-lifetime", created.Payload![1]);

        var holds = listener.For(pool.Id, "StateHold");
        Assert.Equal(pool.GetStats().Hold, holds.Count);
        Assert.Equal(["poolId", "pageAddress", "hold", "pageIndex"], holds[0].PayloadNames);
        Assert.Equal(Enumerable.Range(1, holds.Count).Select(i => (long)i), holds.Select(e => (long)e.Payload![2]!).Order());
        Assert.Contains(holds, e => (ulong)e.Payload![1]! == released);

        var releases = listener.For(pool.Id, "StateRelease");
        Assert.Equal(holds.Count, releases.Count);
        Assert.Equal(["poolId", "pageAddress", "release", "pageIndex"], releases[0].PayloadNames);
        Assert.Equal(released, (ulong)releases[0].Payload![1]!);
        Assert.Equal(1L, releases[0].Payload![2]);

        var release = Assert.Single(listener.For(pool.Id, "Release"));
        Assert.Equal(["poolId", "inflight", "hold", "release", "destroyCount"], release.PayloadNames);
        Assert.Equal(0L, release.Payload![1]);
        Assert.Equal(1L, release.Payload![4]);

        var destroyed = Assert.Single(listener.For(pool.Id, "PoolDestroyed"));
        Assert.Equal(destroyed.Payload![1], destroyed.Payload![2]);
        Assert.NotEmpty(listener.For(pool.Id, "SlowPathRefill"));
    }

    /// <summary>Every page the pool counted in Hold was traced once, and every page it released was traced held.</summary>
    private static void AssertEveryHoldTraced(Listener listener, PagePool pool)
    {
        PagePoolStats s = pool.GetStats();
        var held = listener.For(pool.Id, "StateHold").Select(e => (ulong)e.Payload![1]!).ToList();
        Assert.Equal(s.Hold, held.Count);
        var released = listener.For(pool.Id, "StateRelease").Select(e => (ulong)e.Payload![1]!).ToList();
        Assert.Equal(s.Release, released.Count);
        // Addresses recur (a released page may come back from the provider), so compare counts per address.
        var heldCounts = held.GroupBy(a => a).ToDictionary(g => g.Key, g => g.Count());
        foreach (var g in released.GroupBy(a => a))
            Assert.True(heldCounts.GetValueOrDefault(g.Key) >= g.Count(), $"page 0x{g.Key:x} released untraced");
    }

    [Fact]
    public void A_slow_path_bulk_cut_short_by_a_throwing_init_callback_traces_the_pages_it_kept()
    {
        using var listener = new Listener(EventLevel.Verbose, PagePoolEventSource.Keywords.PageState);
        int calls = 0;
        var pool = new PagePool(new PagePoolOptions
        {
            Name = "es-partial-bulk",
            InitCallback = (_, _) =>
            {
                if (++calls == 10)
                    throw new InvalidOperationException("init failed (test)");
            },
        });
        var consumer = pool.BindConsumer();
        Assert.Throws<InvalidOperationException>(() => consumer.AllocPage());
        // The nine pages set up before the throw are the pool's now, in its cache.
        Assert.Equal(9, pool.GetStats().Hold);
        Assert.Equal(9, pool.GetStats().Pooled);
        AssertEveryHoldTraced(listener, pool);
        var pages = new NetMemRef[20];
        Assert.Equal(20, consumer.AllocPages(pages));
        foreach (NetMemRef p in pages)
            pool.ReleasePage(p);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        AssertEveryHoldTraced(listener, pool);
    }

    [Fact]
    public void A_provider_take_outside_any_per_CPU_section_is_traced()
    {
        // Every per-CPU cache is held (ownership is sticky) by an idle thread, so one more thread's allocation takes
        // its page straight from the provider.
        using var listener = new Listener(EventLevel.Verbose, PagePoolEventSource.Keywords.PageState);
        var pool = new PagePool(new PagePoolOptions { Name = "es-uncached" });
        var holders = new Thread[Environment.ProcessorCount];
        using var holding = new CountdownEvent(holders.Length);
        using var done = new ManualResetEventSlim();
        try
        {
            for (int i = 0; i < holders.Length; i++)
            {
                holders[i] = new Thread(() =>
                {
                    pool.ReleasePage(pool.AllocPage());
                    holding.Signal();
                    done.Wait();
                });
                holders[i].Start();
            }
            Assert.True(holding.Wait(TimeSpan.FromSeconds(30)));
            long slowBefore = pool.GetStats().AllocSlow;
            NetMemRef page = OtherThread.Run(pool.AllocPage);
            Assert.False(page.IsNull);
            // One page, not a bulk: the take went around the per-CPU caches.
            Assert.Equal(slowBefore + 1, pool.GetStats().AllocSlow);
            Assert.Equal(holders.Length * 64 + 1, pool.GetStats().Hold);
            AssertEveryHoldTraced(listener, pool);
            pool.ReleasePage(page);
        }
        finally
        {
            done.Set();
            foreach (Thread h in holders)
                h?.Join();
        }
        pool.Dispose();
        Assert.True(pool.IsFreed);
        AssertEveryHoldTraced(listener, pool);
    }

    [Fact]
    public void Page_state_events_stay_off_at_the_default_level()
    {
        using var listener = new Listener(EventLevel.Informational, EventKeywords.None);
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        consumer.RecycleDirect(consumer.AllocPage());
        Assert.Single(listener.For(pool.Id, "PoolCreated"));
        Assert.Empty(listener.For(pool.Id, "StateHold"));
    }

    [Fact]
    public void Enabling_the_stats_keyword_writes_every_live_pools_counters()
    {
        using var pool = new PagePool(new PagePoolOptions { Name = "es-stats" });
        var consumer = pool.BindConsumer();
        consumer.RecycleDirect(consumer.AllocPage());
        using var listener = new Listener(EventLevel.Informational, PagePoolEventSource.Keywords.Stats);
        List<EventWrittenEventArgs> stats = [];
        for (int i = 0; i < 200 && stats.Count == 0; i++)
        {
            Thread.Sleep(50);
            stats = listener.For(pool.Id, "PoolStats");
        }
        EventWrittenEventArgs e = Assert.Single(stats.Take(1));
        int Index(string name) => e.PayloadNames!.IndexOf(name);
        Assert.Equal("es-stats", e.Payload![Index("name")]);
        Assert.Equal(1L, e.Payload[Index("allocSlow")]);
        Assert.Equal(1L, e.Payload[Index("recycleCached")]);
        Assert.Equal(64L, e.Payload[Index("hold")]);
        Assert.Equal(64L, e.Payload[Index("inflight")]);
        Assert.Contains(listener.Events, x => x.EventName == "StatsSnapshot");
    }
}
