using System.Diagnostics.Tracing;
using System.Runtime.CompilerServices;

namespace UnmanagedPool;

/// <summary>
/// The pool's tracepoints as an <see cref="EventSource"/> named <c>UnmanagedPool-PagePool</c>: the kernel's
/// <c>page_pool_release</c>, <c>page_pool_state_hold</c>, <c>page_pool_state_release</c> and
/// <c>page_pool_update_nid</c> with the same payloads, plus pool lifecycle, stalled shutdown, ring-full and
/// slow-path refill events. Every call site checks <see cref="EventSource.IsEnabled(EventLevel, EventKeywords)"/>
/// first, so nothing is paid while nobody listens.
/// </summary>
[EventSource(Name = SourceName)]
public sealed unsafe partial class PagePoolEventSource : EventSource
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

        /// <summary>
        /// Periodic statistics: while a session enables this keyword at Informational, every live pool's
        /// counters are written once per interval (<see cref="PoolStats"/>, then <see cref="StatsSnapshot"/>).
        /// The interval is the enable argument <c>IntervalSec</c> (default 1).
        /// </summary>
        public const EventKeywords Stats = (EventKeywords)0x10;
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
        /// <summary><see cref="PoolStats"/>.</summary>
        public const int PoolStats = 10;
        /// <summary><see cref="StatsSnapshot"/>.</summary>
        public const int StatsSnapshot = 11;
        /// <summary><see cref="ReleaseFailed"/>.</summary>
        public const int ReleaseFailed = 12;
    }

    /// <summary>A pool was created.</summary>
    [Event(EventIds.PoolCreated, Level = EventLevel.Informational, Keywords = Keywords.Lifecycle)]
    public void PoolCreated(long poolId, string name, int order, int poolSize, int flags, int nid)
    {
        name ??= string.Empty;
        fixed (char* pName = name)
        {
            EventData* data = stackalloc EventData[6];
            Set(ref data[0], &poolId);
            SetString(ref data[1], pName, name);
            Set(ref data[2], &order);
            Set(ref data[3], &poolSize);
            Set(ref data[4], &flags);
            Set(ref data[5], &nid);
            WriteEventCore(EventIds.PoolCreated, 6, data);
        }
    }

    /// <summary>A pool freed its last resources (after every in-flight page came back).</summary>
    [Event(EventIds.PoolDestroyed, Level = EventLevel.Informational, Keywords = Keywords.Lifecycle)]
    public void PoolDestroyed(long poolId, long hold, long release) =>
        WriteEvent(EventIds.PoolDestroyed, poolId, hold, release);

    /// <summary>The kernel's <c>page_pool_release</c>: a destroy attempt, with inflight = hold - release.</summary>
    [Event(EventIds.Release, Level = EventLevel.Informational, Keywords = Keywords.Lifecycle)]
    public void Release(long poolId, long inflight, long hold, long release, long destroyCount)
    {
        EventData* data = stackalloc EventData[5];
        Set(ref data[0], &poolId);
        Set(ref data[1], &inflight);
        Set(ref data[2], &hold);
        Set(ref data[3], &release);
        Set(ref data[4], &destroyCount);
        WriteEventCore(EventIds.Release, 5, data);
    }

    /// <summary>The kernel's <c>page_pool_state_hold</c>: the pool took a page from its provider.</summary>
    [Event(EventIds.StateHold, Level = EventLevel.Verbose, Keywords = Keywords.PageState)]
    public void StateHold(long poolId, ulong pageAddress, long hold, long pageIndex) =>
        WritePageState(EventIds.StateHold, poolId, pageAddress, hold, pageIndex);

    /// <summary>The kernel's <c>page_pool_state_release</c>: the pool gave a page back.</summary>
    [Event(EventIds.StateRelease, Level = EventLevel.Verbose, Keywords = Keywords.PageState)]
    public void StateRelease(long poolId, ulong pageAddress, long release, long pageIndex) =>
        WritePageState(EventIds.StateRelease, poolId, pageAddress, release, pageIndex);

    /// <summary>The kernel's <c>page_pool_update_nid</c>.</summary>
    [Event(EventIds.UpdateNid, Level = EventLevel.Informational, Keywords = Keywords.Lifecycle)]
    public void UpdateNid(long poolId, int poolNid, int newNid)
    {
        EventData* data = stackalloc EventData[3];
        Set(ref data[0], &poolId);
        Set(ref data[1], &poolNid);
        Set(ref data[2], &newNid);
        WriteEventCore(EventIds.UpdateNid, 3, data);
    }

    /// <summary>The kernel's "stalled pool shutdown" warning: pages are still in flight after a destroy.</summary>
    [Event(EventIds.StalledShutdown, Level = EventLevel.Warning, Keywords = Keywords.Lifecycle,
        Message = "page_pool {0} stalled pool shutdown: {1} inflight {2} sec")]
    public void StalledShutdown(long poolId, long inflight, long seconds, string leaks)
    {
        leaks ??= string.Empty;
        fixed (char* pLeaks = leaks)
        {
            EventData* data = stackalloc EventData[4];
            Set(ref data[0], &poolId);
            Set(ref data[1], &inflight);
            Set(ref data[2], &seconds);
            SetString(ref data[3], pLeaks, leaks);
            WriteEventCore(EventIds.StalledShutdown, 4, data);
        }
    }

    /// <summary>
    /// A page release threw where no caller could take the exception (the idle trimmer's timer): the page stays in
    /// flight and the pool goes on. <paramref name="operation"/> names what was releasing, <paramref name="error"/>
    /// is the exception.
    /// </summary>
    [Event(EventIds.ReleaseFailed, Level = EventLevel.Warning, Keywords = Keywords.Lifecycle,
        Message = "page_pool {0}: a release during {1} failed: {2}")]
    public void ReleaseFailed(long poolId, string operation, string error)
    {
        operation ??= string.Empty;
        error ??= string.Empty;
        fixed (char* pOperation = operation)
        fixed (char* pError = error)
        {
            EventData* data = stackalloc EventData[3];
            Set(ref data[0], &poolId);
            SetString(ref data[1], pOperation, operation);
            SetString(ref data[2], pError, error);
            WriteEventCore(EventIds.ReleaseFailed, 3, data);
        }
    }

    /// <summary>Pages were released because the ring was full.</summary>
    [Event(EventIds.RingFull, Level = EventLevel.Informational, Keywords = Keywords.Ring)]
    public void RingFull(long poolId, int pages)
    {
        EventData* data = stackalloc EventData[2];
        Set(ref data[0], &poolId);
        Set(ref data[1], &pages);
        WriteEventCore(EventIds.RingFull, 2, data);
    }

    /// <summary>The slow path took pages from the provider.</summary>
    [Event(EventIds.SlowPathRefill, Level = EventLevel.Informational, Keywords = Keywords.SlowPath)]
    public void SlowPathRefill(long poolId, int pages, int order)
    {
        EventData* data = stackalloc EventData[3];
        Set(ref data[0], &poolId);
        Set(ref data[1], &pages);
        Set(ref data[2], &order);
        WriteEventCore(EventIds.SlowPathRefill, 3, data);
    }

    /// <summary>
    /// One pool's counters (the kernel's <c>page_pool_get_stats</c> plus hold/release, as netlink
    /// <c>page-pool-get</c> and <c>ethtool -S</c> show them), written periodically under <see cref="Keywords.Stats"/>.
    /// </summary>
    /// <remarks>
    /// Version 1 adds the pool's identity as netlink reports it: <paramref name="interfaceName"/> (empty for none),
    /// <paramref name="queueIndex"/> (-1 for none) and <paramref name="detachTime"/> (Unix seconds, 0 while not detached),
    /// and the kind of memory provider the pool draws from (<paramref name="memoryProvider"/>).
    /// </remarks>
    [Event(EventIds.PoolStats, Level = EventLevel.Informational, Keywords = Keywords.Stats, Version = 1)]
    public void PoolStats(long sequence, long poolId, string name, long allocFast, long allocSlow,
        long allocSlowHighOrder, long allocEmpty, long allocRefill, long allocWaive, long recycleCached,
        long recycleCacheFull, long recycleRing, long recycleRingFull, long recycleReleasedRefcnt, long hold,
        long release, long inflight, long pooled, int bufferSize, int order, int nid, bool destroying,
        string interfaceName, int queueIndex, long detachTime, string memoryProvider)
    {
        int destroyingValue = destroying ? 1 : 0;
        name ??= string.Empty;
        interfaceName ??= string.Empty;
        memoryProvider ??= string.Empty;
        fixed (char* pName = name)
        fixed (char* pInterface = interfaceName)
        fixed (char* pProvider = memoryProvider)
        {
            EventData* data = stackalloc EventData[26];
            Set(ref data[0], &sequence);
            Set(ref data[1], &poolId);
            SetString(ref data[2], pName, name);
            Set(ref data[3], &allocFast);
            Set(ref data[4], &allocSlow);
            Set(ref data[5], &allocSlowHighOrder);
            Set(ref data[6], &allocEmpty);
            Set(ref data[7], &allocRefill);
            Set(ref data[8], &allocWaive);
            Set(ref data[9], &recycleCached);
            Set(ref data[10], &recycleCacheFull);
            Set(ref data[11], &recycleRing);
            Set(ref data[12], &recycleRingFull);
            Set(ref data[13], &recycleReleasedRefcnt);
            Set(ref data[14], &hold);
            Set(ref data[15], &release);
            Set(ref data[16], &inflight);
            Set(ref data[17], &pooled);
            Set(ref data[18], &bufferSize);
            Set(ref data[19], &order);
            Set(ref data[20], &nid);
            // EventSource writes bool as a 4-byte Win32 BOOL.
            Set(ref data[21], &destroyingValue);
            SetString(ref data[22], pInterface, interfaceName);
            Set(ref data[23], &queueIndex);
            Set(ref data[24], &detachTime);
            SetString(ref data[25], pProvider, memoryProvider);
            WriteEventCore(EventIds.PoolStats, 26, data);
        }
    }

    /// <summary>Ends one round of <see cref="PoolStats"/> events: <paramref name="pools"/> pools were written.</summary>
    [Event(EventIds.StatsSnapshot, Level = EventLevel.Informational, Keywords = Keywords.Stats)]
    public void StatsSnapshot(long sequence, int pools)
    {
        EventData* data = stackalloc EventData[2];
        Set(ref data[0], &sequence);
        Set(ref data[1], &pools);
        WriteEventCore(EventIds.StatsSnapshot, 2, data);
    }

    [NonEvent]
    private void WritePageState(int eventId, long poolId, ulong pageAddress, long counter, long pageIndex)
    {
        EventData* data = stackalloc EventData[4];
        Set(ref data[0], &poolId);
        Set(ref data[1], &pageAddress);
        Set(ref data[2], &counter);
        Set(ref data[3], &pageIndex);
        WriteEventCore(eventId, 4, data);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Set<T>(ref EventData data, T* value) where T : unmanaged
    {
        data = default; // clears the reserved field too
        data.DataPointer = (nint)value;
        data.Size = sizeof(T);
    }

    private static void SetString(ref EventData data, char* chars, string value)
    {
        data = default;
        data.DataPointer = (nint)chars;
        data.Size = (value.Length + 1) * sizeof(char);
    }
}
