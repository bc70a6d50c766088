using System.Diagnostics.Tracing;

namespace UnmanagedPool;

/// <summary>
/// The pool's tracepoints as an <see cref="EventSource"/> named <c>UnmanagedPool-PagePool</c>: the kernel's
/// <c>page_pool_release</c>, <c>page_pool_state_hold</c>, <c>page_pool_state_release</c> and
/// <c>page_pool_update_nid</c> with the same payloads, plus pool lifecycle, stalled shutdown, ring-full and
/// slow-path refill events. Every call site checks <see cref="EventSource.IsEnabled(EventLevel, EventKeywords)"/>
/// first, so nothing is paid while nobody listens.
/// </summary>
[EventSource(Name = SourceName)]
public sealed class PagePoolEventSource : EventSource
{
    /// <summary>The event source name to give <c>dotnet-trace --providers</c>.</summary>
    public const string SourceName = "UnmanagedPool-PagePool";

    /// <summary>The one instance.</summary>
    public static readonly PagePoolEventSource Log = new();

    private PagePoolEventSource() { }

    /// <summary>Event keywords.</summary>
    public static class Keywords
    {
        /// <summary>Pool created, destroyed, release attempts, NUMA updates, stalled shutdown.</summary>
        public const EventKeywords Lifecycle = (EventKeywords)0x1;

        /// <summary>Per-page hold and release (Verbose: one event per page on the slow path).</summary>
        public const EventKeywords PageState = (EventKeywords)0x2;

        /// <summary>Slow-path refills from the provider.</summary>
        public const EventKeywords SlowPath = (EventKeywords)0x4;

        /// <summary>Ring full.</summary>
        public const EventKeywords Ring = (EventKeywords)0x8;
    }

    /// <summary>Event ids, stable across versions.</summary>
    public static class EventIds
    {
        /// <summary><see cref="PoolCreated"/>.</summary>
        public const int PoolCreated = 1;
        /// <summary><see cref="PoolDestroyed"/>.</summary>
        public const int PoolDestroyed = 2;
        /// <summary><see cref="Release"/>.</summary>
        public const int Release = 3;
        /// <summary><see cref="StateHold"/>.</summary>
        public const int StateHold = 4;
        /// <summary><see cref="StateRelease"/>.</summary>
        public const int StateRelease = 5;
        /// <summary><see cref="UpdateNid"/>.</summary>
        public const int UpdateNid = 6;
        /// <summary><see cref="StalledShutdown"/>.</summary>
        public const int StalledShutdown = 7;
        /// <summary><see cref="RingFull"/>.</summary>
        public const int RingFull = 8;
        /// <summary><see cref="SlowPathRefill"/>.</summary>
        public const int SlowPathRefill = 9;
    }

    /// <summary>A pool was created.</summary>
    [Event(EventIds.PoolCreated, Level = EventLevel.Informational, Keywords = Keywords.Lifecycle)]
    public void PoolCreated(long poolId, string name, int order, int poolSize, int flags, int nid) =>
        WriteEvent(EventIds.PoolCreated, poolId, name, order, poolSize, flags, nid);

    /// <summary>A pool freed its last resources (after every in-flight page came back).</summary>
    [Event(EventIds.PoolDestroyed, Level = EventLevel.Informational, Keywords = Keywords.Lifecycle)]
    public void PoolDestroyed(long poolId, long hold, long release) =>
        WriteEvent(EventIds.PoolDestroyed, poolId, hold, release);

    /// <summary>The kernel's <c>page_pool_release</c>: a destroy attempt, with inflight = hold - release.</summary>
    [Event(EventIds.Release, Level = EventLevel.Informational, Keywords = Keywords.Lifecycle)]
    public void Release(long poolId, long inflight, long hold, long release, long destroyCount) =>
        WriteEvent(EventIds.Release, poolId, inflight, hold, release, destroyCount);

    /// <summary>The kernel's <c>page_pool_state_hold</c>: the pool took a page from its provider.</summary>
    [Event(EventIds.StateHold, Level = EventLevel.Verbose, Keywords = Keywords.PageState)]
    public void StateHold(long poolId, ulong pageAddress, long hold, long pageIndex) =>
        WriteEvent(EventIds.StateHold, poolId, (long)pageAddress, hold, pageIndex);

    /// <summary>The kernel's <c>page_pool_state_release</c>: the pool gave a page back.</summary>
    [Event(EventIds.StateRelease, Level = EventLevel.Verbose, Keywords = Keywords.PageState)]
    public void StateRelease(long poolId, ulong pageAddress, long release, long pageIndex) =>
        WriteEvent(EventIds.StateRelease, poolId, (long)pageAddress, release, pageIndex);

    /// <summary>The kernel's <c>page_pool_update_nid</c>.</summary>
    [Event(EventIds.UpdateNid, Level = EventLevel.Informational, Keywords = Keywords.Lifecycle)]
    public void UpdateNid(long poolId, int poolNid, int newNid) =>
        WriteEvent(EventIds.UpdateNid, poolId, poolNid, newNid);

    /// <summary>The kernel's "stalled pool shutdown" warning: pages are still in flight after a destroy.</summary>
    [Event(EventIds.StalledShutdown, Level = EventLevel.Warning, Keywords = Keywords.Lifecycle,
        Message = "page_pool {0} stalled pool shutdown: id {0}, {1} inflight {2} sec")]
    public void StalledShutdown(long poolId, long inflight, long seconds, string leaks) =>
        WriteEvent(EventIds.StalledShutdown, poolId, inflight, seconds, leaks);

    /// <summary>Pages were released because the ring was full.</summary>
    [Event(EventIds.RingFull, Level = EventLevel.Informational, Keywords = Keywords.Ring)]
    public void RingFull(long poolId, int pages) => WriteEvent(EventIds.RingFull, poolId, pages);

    /// <summary>The slow path took pages from the provider.</summary>
    [Event(EventIds.SlowPathRefill, Level = EventLevel.Informational, Keywords = Keywords.SlowPath)]
    public void SlowPathRefill(long poolId, int pages, int order) => WriteEvent(EventIds.SlowPathRefill, poolId, pages, order);
}
