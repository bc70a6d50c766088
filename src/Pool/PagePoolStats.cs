using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// A snapshot of a pool's counters: the kernel's <c>struct page_pool_stats</c> (alloc and recycle stats) plus
/// its hold/release accounting. Counters taken from several caches are summed when read, so a snapshot taken
/// while other threads work is a close approximation; at quiescence it is exact.
/// </summary>
public readonly record struct PagePoolStats
{
    /// <summary><c>alloc_stats.fast</c>: allocations served from the consumer's (or a per-CPU) alloc cache.</summary>
    public long AllocFast { get; init; }

    /// <summary><c>alloc_stats.slow</c>: slow-path order-0 bulk allocations from the provider (one per bulk).</summary>
    public long AllocSlow { get; init; }

    /// <summary><c>alloc_stats.slow_high_order</c>: slow-path allocations of order &gt; 0.</summary>
    public long AllocSlowHighOrder { get; init; }

    /// <summary><c>alloc_stats.empty</c>: refills that found the ring (and the per-CPU caches) empty.</summary>
    public long AllocEmpty { get; init; }

    /// <summary><c>alloc_stats.refill</c>: allocations served after refilling the cache from the ring.</summary>
    public long AllocRefill { get; init; }

    /// <summary><c>alloc_stats.waive</c>: pages released at refill because they sit on another NUMA node.</summary>
    public long AllocWaive { get; init; }

    /// <summary><c>recycle_stats.cached</c>: pages recycled into the consumer's alloc cache.</summary>
    public long RecycleCached { get; init; }

    /// <summary><c>recycle_stats.cache_full</c>: direct recycles that found the alloc cache full (and went to the ring).</summary>
    public long RecycleCacheFull { get; init; }

    /// <summary><c>recycle_stats.ring</c>: pages recycled through the per-CPU caches and the ring.</summary>
    public long RecycleRing { get; init; }

    /// <summary><c>recycle_stats.ring_full</c>: pages released because the ring was full.</summary>
    public long RecycleRingFull { get; init; }

    /// <summary><c>recycle_stats.released_refcnt</c>: pages released because someone else still held a page reference.</summary>
    public long RecycleReleasedRefcnt { get; init; }

    /// <summary><c>pages_state_hold_cnt</c>: pages the pool has taken from its provider.</summary>
    public long Hold { get; init; }

    /// <summary><c>pages_state_release_cnt</c>: pages the pool has given back.</summary>
    public long Release { get; init; }

    /// <summary>Pages owned by the pool or its users: <c>Hold - Release</c> (the kernel's inflight).</summary>
    public long InFlight => Hold - Release;

    /// <summary>
    /// Pages the pool holds: in the alloc cache, the consumer's put buffer, the per-CPU caches and the ring, plus
    /// the fragment pages it is cutting from (approximate under load). With no user holding a page,
    /// <c>Pooled == InFlight</c>.
    /// </summary>
    public long Pooled { get; init; }

    /// <summary>Slow-path takes that got no page from the provider (out of memory or an injected fault): the allocation returned null.</summary>
    public long AllocFailed { get; init; }

    /// <summary>Slow-path takes refused because the pool held <see cref="PagePoolOptions.MemoryLimit"/>: the allocation returned null.</summary>
    public long AllocOverLimit { get; init; }

    /// <summary>Pages given back to the provider by <see cref="PagePool.Trim"/> and idle trimming (counted in <see cref="Release"/> too).</summary>
    public long Trimmed { get; init; }

    /// <summary>Bytes per buffer (4096 &lt;&lt; order).</summary>
    public int BufferSize { get; init; }

    /// <summary>The interface the pool serves (netlink <c>ifindex</c>; <see cref="PagePoolOptions.Interface"/>), or null.</summary>
    public string? Interface { get; init; }

    /// <summary>The RX queue the pool serves (<see cref="PagePoolOptions.QueueIndex"/>), or null.</summary>
    public int? QueueIndex { get; init; }

    /// <summary>Netlink <c>detach-time</c>: when the pool was disposed with pages in flight (<see cref="PagePool.DetachTime"/>), or null.</summary>
    public DateTimeOffset? DetachTime { get; init; }

    /// <summary>Which kind of memory provider the pool takes its pages from.</summary>
    public MemoryProviderKind MemoryProvider { get; init; }
}
