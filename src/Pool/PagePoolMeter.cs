using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace UnmanagedPool;

/// <summary>
/// The pool's <see cref="Meter"/>, named <c>UnmanagedPool.PagePool</c>: observable instruments for the eleven
/// <c>page_pool_get_stats</c> counters, hold, release, inflight and pooled memory, one measurement per live pool
/// tagged <c>pool.id</c> and <c>pool.name</c>, plus what netlink <c>page-pool-get</c> reports when the pool has
/// it: <c>pool.interface</c>, <c>pool.queue</c> and <c>pool.detach_time</c> (Unix seconds; see <see cref="PagePool.DetachTime"/>). The callbacks run only when a listener collects
/// (<c>dotnet-counters monitor --counters UnmanagedPool.PagePool</c>), so nothing is paid while nobody listens.
/// </summary>
public static class PagePoolMeter
{
    /// <summary>The meter name to give <c>dotnet-counters --counters</c> or a <see cref="MeterListener"/>.</summary>
    public const string MeterName = "UnmanagedPool.PagePool";

    private const string Pages = "{page}";
    private const string Allocations = "{allocation}";
    private const string Bytes = "By";

    /// <summary>The meter; created with the first pool (or on first use).</summary>
    public static Meter Meter { get; } = CreateMeter();

    /// <summary>Makes sure the meter and its instruments exist (called when a pool is created).</summary>
    internal static void EnsureCreated() => _ = Meter;

    private static Meter CreateMeter()
    {
        var meter = new Meter(MeterName, typeof(PagePoolMeter).Assembly.GetName().Version?.ToString());

        Counter(meter, "pagepool.alloc.fast", Pages, "Allocations served from an alloc cache (alloc_stats.fast).", static s => s.AllocFast);
        Counter(meter, "pagepool.alloc.slow", Allocations, "Order-0 bulk allocations from the provider (alloc_stats.slow).", static s => s.AllocSlow);
        Counter(meter, "pagepool.alloc.slow_high_order", Allocations, "Allocations of order > 0 from the provider (alloc_stats.slow_high_order).", static s => s.AllocSlowHighOrder);
        Counter(meter, "pagepool.alloc.empty", Allocations, "Refills that found the ring empty (alloc_stats.empty).", static s => s.AllocEmpty);
        Counter(meter, "pagepool.alloc.refill", Pages, "Allocations served after a refill from the ring (alloc_stats.refill).", static s => s.AllocRefill);
        Counter(meter, "pagepool.alloc.waive", Pages, "Pages released at refill for being on another NUMA node (alloc_stats.waive).", static s => s.AllocWaive);
        Counter(meter, "pagepool.recycle.cached", Pages, "Pages recycled into the alloc cache (recycle_stats.cached).", static s => s.RecycleCached);
        Counter(meter, "pagepool.recycle.cache_full", Pages, "Direct recycles that found the alloc cache full (recycle_stats.cache_full).", static s => s.RecycleCacheFull);
        Counter(meter, "pagepool.recycle.ring", Pages, "Pages recycled through the ring (recycle_stats.ring).", static s => s.RecycleRing);
        Counter(meter, "pagepool.recycle.ring_full", Pages, "Pages released because the ring was full (recycle_stats.ring_full).", static s => s.RecycleRingFull);
        Counter(meter, "pagepool.recycle.released_refcnt", Pages, "Pages released because another reference was held (recycle_stats.released_refcnt).", static s => s.RecycleReleasedRefcnt);
        Counter(meter, "pagepool.pages.hold", Pages, "Pages taken from the provider (pages_state_hold_cnt).", static s => s.Hold);
        Counter(meter, "pagepool.pages.release", Pages, "Pages given back to the provider (pages_state_release_cnt).", static s => s.Release);
        Gauge(meter, "pagepool.pages.inflight", Pages, "Pages owned by the pool or its users (hold - release).", static s => s.InFlight);
        Gauge(meter, "pagepool.memory.inflight", Bytes, "Bytes owned by the pool or its users (inflight * buffer size).", static s => s.InFlight * s.BufferSize);
        Gauge(meter, "pagepool.memory.pooled", Bytes, "Bytes sitting in the alloc cache, per-CPU caches and ring.", static s => s.Pooled * s.BufferSize);
        return meter;
    }

    private static void Counter(Meter meter, string name, string unit, string description, Func<PagePoolStats, long> read) =>
        meter.CreateObservableCounter(name, () => Measure(read), unit, description);

    private static void Gauge(Meter meter, string name, string unit, string description, Func<PagePoolStats, long> read) =>
        meter.CreateObservableGauge(name, () => Measure(read), unit, description);

    /// <summary>One measurement per live pool; called by a collecting listener only.</summary>
    private static IEnumerable<Measurement<long>> Measure(Func<PagePoolStats, long> read)
    {
        var result = new List<Measurement<long>>();
        foreach (PagePool pool in PagePool.LivePools)
        {
            PagePoolStats stats = pool.GetStats();
            // The identity netlink reports (ifindex, queue) as tags, present when the pool was given one.
            var tags = new TagList
            {
                { "pool.id", pool.Id },
                { "pool.name", pool.Name },
            };
            if (stats.Interface != null)
                tags.Add("pool.interface", stats.Interface);
            if (stats.QueueIndex is { } queue)
                tags.Add("pool.queue", queue);
            if (stats.DetachTime is { } detached)
                tags.Add("pool.detach_time", detached.ToUnixTimeSeconds());
            result.Add(new Measurement<long>(read(stats), in tags));
        }
        return result;
    }
}
