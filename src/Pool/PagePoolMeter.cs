using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace UnmanagedPool;

/// <summary>
/// The pool's <see cref="Meter"/>, named <c>UnmanagedPool.PagePool</c>: observable instruments for the eleven
/// <c>page_pool_get_stats</c> counters, hold, release, inflight and pooled memory, one measurement per live pool
/// tagged <c>pool.id</c> and <c>pool.name</c>, plus what netlink <c>page-pool-get</c> reports when the pool has
/// it: <c>pool.interface</c>, <c>pool.queue</c> and <c>pool.detach_time</c> (Unix seconds; see <see cref="PagePool.DetachTime"/>). The callbacks run only when a listener collects
/// (<c>dotnet-counters monitor --counters UnmanagedPool.PagePool</c>), so nothing is paid while nobody listens.
/// </summary>
/// <remarks>
/// A pool whose <see cref="PagePoolOptions.MeterFactory"/> is set is measured on a meter of the same name created
/// through that factory (once per factory, with the same instruments and units); the others on the process-wide
/// <see cref="Meter"/>. Each pool is measured on exactly one of them.
/// </remarks>
public static class PagePoolMeter
{
    /// <summary>The meter name to give <c>dotnet-counters --counters</c> or a <see cref="MeterListener"/>.</summary>
    public const string MeterName = "UnmanagedPool.PagePool";

    private const string Pages = "{page}";
    private const string Allocations = "{allocation}";
    private const string Bytes = "By";

    /// <summary>The process-wide meter of the pools created without a <see cref="PagePoolOptions.MeterFactory"/>;
    /// created with the first pool (or on first use).</summary>
    public static Meter Meter { get; } = CreateMeter(null);

    /// <summary>The meter of each factory that created one, kept as long as the factory lives.</summary>
    private static readonly ConditionalWeakTable<IMeterFactory, Meter> s_factoryMeters = new();

    /// <summary>Makes one factory's meter at a time, so a factory that does not cache gives one meter, not two.</summary>
    private static readonly Lock s_factoryLock = new();

    /// <summary>Makes sure the meter that measures a new pool and its instruments exist (called when a pool is
    /// created): the factory's meter when the pool was given one, else <see cref="Meter"/>.</summary>
    internal static void EnsureCreated(IMeterFactory? factory)
    {
        if (factory is null)
        {
            _ = Meter;
            return;
        }
        lock (s_factoryLock)
        {
            if (!s_factoryMeters.TryGetValue(factory, out _))
                s_factoryMeters.Add(factory, CreateMeter(factory));
        }
    }

    /// <summary>Creates a meter and its instruments; they measure the live pools whose factory is <paramref name="factory"/>.</summary>
    private static Meter CreateMeter(IMeterFactory? factory)
    {
        string? version = typeof(PagePoolMeter).Assembly.GetName().Version?.ToString();
        Meter meter = factory is null
            ? new Meter(MeterName, version)
            : factory.Create(new MeterOptions(MeterName) { Version = version });

        Counter(meter, factory, "pagepool.alloc.fast", Pages, "Allocations served from an alloc cache (alloc_stats.fast).", static s => s.AllocFast);
        Counter(meter, factory, "pagepool.alloc.slow", Allocations, "Order-0 bulk allocations from the provider (alloc_stats.slow).", static s => s.AllocSlow);
        Counter(meter, factory, "pagepool.alloc.slow_high_order", Allocations, "Allocations of order > 0 from the provider (alloc_stats.slow_high_order).", static s => s.AllocSlowHighOrder);
        Counter(meter, factory, "pagepool.alloc.empty", Allocations, "Refills that found the ring empty (alloc_stats.empty).", static s => s.AllocEmpty);
        Counter(meter, factory, "pagepool.alloc.refill", Pages, "Allocations served after a refill from the ring (alloc_stats.refill).", static s => s.AllocRefill);
        Counter(meter, factory, "pagepool.alloc.waive", Pages, "Pages released at refill for being on another NUMA node (alloc_stats.waive).", static s => s.AllocWaive);
        Counter(meter, factory, "pagepool.recycle.cached", Pages, "Pages recycled into the alloc cache (recycle_stats.cached).", static s => s.RecycleCached);
        Counter(meter, factory, "pagepool.recycle.cache_full", Pages, "Direct recycles that found the alloc cache full (recycle_stats.cache_full).", static s => s.RecycleCacheFull);
        Counter(meter, factory, "pagepool.recycle.ring", Pages, "Pages recycled through the ring (recycle_stats.ring).", static s => s.RecycleRing);
        Counter(meter, factory, "pagepool.recycle.ring_full", Pages, "Pages released because the ring was full (recycle_stats.ring_full).", static s => s.RecycleRingFull);
        Counter(meter, factory, "pagepool.recycle.released_refcnt", Pages, "Pages released because another reference was held (recycle_stats.released_refcnt).", static s => s.RecycleReleasedRefcnt);
        Counter(meter, factory, "pagepool.pages.hold", Pages, "Pages taken from the provider (pages_state_hold_cnt).", static s => s.Hold);
        Counter(meter, factory, "pagepool.pages.release", Pages, "Pages given back to the provider (pages_state_release_cnt).", static s => s.Release);
        Gauge(meter, factory, "pagepool.pages.inflight", Pages, "Pages owned by the pool or its users (hold - release).", static s => s.InFlight);
        Gauge(meter, factory, "pagepool.memory.inflight", Bytes, "Bytes owned by the pool or its users (inflight * buffer size).", static s => s.InFlight * s.BufferSize);
        Gauge(meter, factory, "pagepool.memory.pooled", Bytes, "Bytes sitting in the alloc cache, per-CPU caches and ring.", static s => s.Pooled * s.BufferSize);
        return meter;
    }

    private static void Counter(Meter meter, IMeterFactory? factory, string name, string unit, string description, Func<PagePoolStats, long> read) =>
        meter.CreateObservableCounter(name, () => Measure(factory, read), unit, description);

    private static void Gauge(Meter meter, IMeterFactory? factory, string name, string unit, string description, Func<PagePoolStats, long> read) =>
        meter.CreateObservableGauge(name, () => Measure(factory, read), unit, description);

    /// <summary>One measurement per live pool created with <paramref name="factory"/> (null: without one);
    /// called by a collecting listener only.</summary>
    private static IEnumerable<Measurement<long>> Measure(IMeterFactory? factory, Func<PagePoolStats, long> read)
    {
        var result = new List<Measurement<long>>();
        foreach (PagePool pool in PagePool.LivePools)
        {
            if (!ReferenceEquals(pool.Options.MeterFactory, factory))
                continue;
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
