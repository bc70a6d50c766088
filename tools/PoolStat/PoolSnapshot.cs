using System.Text.Json.Serialization;
using Microsoft.Diagnostics.Tracing;

namespace UnmanagedPool.PoolStat;

/// <summary>One pool's counters as read from a <c>PoolStats</c> event (names as in <c>PagePoolStats</c>).</summary>
internal sealed record PoolSnapshot
{
    public long Id { get; init; }
    public string Name { get; init; } = "";
    public long AllocFast { get; init; }
    public long AllocSlow { get; init; }
    public long AllocSlowHighOrder { get; init; }
    public long AllocEmpty { get; init; }
    public long AllocRefill { get; init; }
    public long AllocWaive { get; init; }
    public long RecycleCached { get; init; }
    public long RecycleCacheFull { get; init; }
    public long RecycleRing { get; init; }
    public long RecycleRingFull { get; init; }
    public long RecycleReleasedRefcnt { get; init; }
    public long Hold { get; init; }
    public long Release { get; init; }
    public long InFlight { get; init; }
    public long Pooled { get; init; }
    public int BufferSize { get; init; }
    public int Order { get; init; }
    public int Nid { get; init; }
    public bool Destroying { get; init; }
    public string? Interface { get; init; }
    public int? QueueIndex { get; init; }
    public DateTimeOffset? DetachTime { get; init; }

    /// <summary>The identity netlink <c>page-pool-get</c> shows (ifindex, queue, detach-time), or "" when none is set.</summary>
    public string Identity()
    {
        var parts = new List<string>();
        if (Interface != null)
            parts.Add($"if {Interface}");
        if (QueueIndex is { } q)
            parts.Add($"queue {q}");
        if (DetachTime is { } t)
            parts.Add($"detached {t.UtcDateTime:yyyy-MM-dd HH:mm:ss}Z");
        return string.Join(", ", parts);
    }

    /// <summary>The kind of memory provider the pool draws from (Region, Umem); empty from an older process.</summary>
    public string MemoryProvider { get; init; } = "";

    [JsonIgnore]
    public long Sequence { get; init; }

    /// <summary>The counters in <c>ethtool -S</c> order, with kernel-style names.</summary>
    public IEnumerable<(string Name, long Value)> Counters()
    {
        yield return ("alloc_fast", AllocFast);
        yield return ("alloc_slow", AllocSlow);
        yield return ("alloc_slow_high_order", AllocSlowHighOrder);
        yield return ("alloc_empty", AllocEmpty);
        yield return ("alloc_refill", AllocRefill);
        yield return ("alloc_waive", AllocWaive);
        yield return ("recycle_cached", RecycleCached);
        yield return ("recycle_cache_full", RecycleCacheFull);
        yield return ("recycle_ring", RecycleRing);
        yield return ("recycle_ring_full", RecycleRingFull);
        yield return ("recycle_released_refcnt", RecycleReleasedRefcnt);
        yield return ("pages_hold", Hold);
        yield return ("pages_release", Release);
        yield return ("inflight", InFlight);
        yield return ("inflight_mem", InFlight * BufferSize);
        yield return ("pooled", Pooled);
    }

    public static PoolSnapshot FromEvent(TraceEvent e) => new()
    {
        Sequence = Long(e, "sequence"),
        Id = Long(e, "poolId"),
        Name = e.PayloadByName("name") as string ?? "",
        AllocFast = Long(e, "allocFast"),
        AllocSlow = Long(e, "allocSlow"),
        AllocSlowHighOrder = Long(e, "allocSlowHighOrder"),
        AllocEmpty = Long(e, "allocEmpty"),
        AllocRefill = Long(e, "allocRefill"),
        AllocWaive = Long(e, "allocWaive"),
        RecycleCached = Long(e, "recycleCached"),
        RecycleCacheFull = Long(e, "recycleCacheFull"),
        RecycleRing = Long(e, "recycleRing"),
        RecycleRingFull = Long(e, "recycleRingFull"),
        RecycleReleasedRefcnt = Long(e, "recycleReleasedRefcnt"),
        Hold = Long(e, "hold"),
        Release = Long(e, "release"),
        InFlight = Long(e, "inflight"),
        Pooled = Long(e, "pooled"),
        BufferSize = (int)Long(e, "bufferSize"),
        Order = (int)Long(e, "order"),
        Nid = (int)Long(e, "nid"),
        Destroying = Long(e, "destroying") != 0,
        // Version 1 of the event; an older process writes none of them.
        Interface = e.PayloadByName("interfaceName") is string { Length: > 0 } ifname ? ifname : null,
        QueueIndex = e.PayloadByName("queueIndex") is null || Long(e, "queueIndex") < 0 ? null : (int)Long(e, "queueIndex"),
        DetachTime = Long(e, "detachTime") is > 0 and var seconds ? DateTimeOffset.FromUnixTimeSeconds(seconds) : null,
        MemoryProvider = e.PayloadByName("memoryProvider") as string ?? "",
    };

    public static long Long(TraceEvent e, string name) => e.PayloadByName(name) switch
    {
        long l => l,
        int i => i,
        ulong u => (long)u,
        uint u => u,
        bool b => b ? 1 : 0,
        null => 0,
        object o => Convert.ToInt64(o, System.Globalization.CultureInfo.InvariantCulture),
    };
}
