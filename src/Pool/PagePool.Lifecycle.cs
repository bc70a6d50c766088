using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Tracing;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using UnmanagedPool.Internal;
using UnmanagedPool.Native;

namespace UnmanagedPool;

// The pool's lifecycle after Dispose: alive -> destroying -> drained -> freed, the drain, the release retries and the
// stalled-shutdown warning.
public sealed unsafe partial class PagePool
{
    // =====================================================================================================
    // The state machine: StateAlive -> StateDestroying (Dispose) -> StateDrained (the first drain that revoked every
    // per-CPU cache with no provider take under way) -> StateFreed (the last page back, or the retry timer). The
    // three transitions are below; every reader goes through IsAlive, IsDestroying, IsDrained, State or the
    // rechecks, except the two hot-path reads in CheckOwned and CanRecycle, which read the field directly.
    // =====================================================================================================

    private const int StateAlive = 0;
    private const int StateDestroying = 1;
    private const int StateDrained = 2;
    private const int StateFreed = 3;

    private int _state;                 // StateAlive -> StateDestroying -> StateDrained -> StateFreed; only the three CAS below write it
    private long _destroyCount;
    private long _destroyStartedTicks;
    private long _lastStallWarningTicks;
    private Timer? _retryTimer;

    /// <summary>The lifecycle state, read with acquire semantics.</summary>
    // Volatile: Dispose and the freeing thread write it from any thread.
    private int State => Volatile.Read(ref _state);

    /// <summary>Whether Dispose has not begun (read with acquire semantics: Dispose may run on another thread).</summary>
    private bool IsAlive
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => State == StateAlive;
    }

    /// <summary>Whether Dispose has begun and the pool is not yet freed.</summary>
    private bool IsDestroying => State is StateDestroying or StateDrained;

    /// <summary>
    /// Whether a drain after Dispose has revoked every per-CPU cache with no provider take under way (drained or
    /// freed): no Hold is on its way any more, so the pool may be freed once nothing is in flight.
    /// </summary>
    private bool IsDrained => State >= StateDrained;

    /// <summary>The transition alive -> destroying: true for the one Dispose that makes it.</summary>
    private bool TryBeginDestroy()
    {
        // Interlocked: Dispose may race with itself from several threads; one proceeds.
        int was = Interlocked.CompareExchange(ref _state, StateDestroying, StateAlive);
        Debug.Assert(was is StateAlive or StateDestroying or StateDrained or StateFreed, "unknown pool state");
        return was == StateAlive;
    }

    /// <summary>
    /// The transition destroying -> drained, by whichever thread (Dispose, the retry timer, the last take to end)
    /// completes the first full drain; a second thread that completes one too finds it made.
    /// </summary>
    private void MarkDrained()
    {
        // Interlocked (a full fence): releases on other threads either see the state and free the pool
        // themselves, or their release count is seen by the caller's TryFreeAfterRelease.
        int was = Interlocked.CompareExchange(ref _state, StateDrained, StateDestroying);
        Debug.Assert(was is StateDestroying or StateDrained, "drained before Dispose or after the pool was freed");
    }

    /// <summary>
    /// The transition drained -> freed: true for the one thread that makes it (the last releasing thread and the
    /// retry timer may both try), which then frees the pool's resources.
    /// </summary>
    private bool TryMarkFreed()
    {
        // Freeing before the complete drain would lose a Hold on its way.
        Debug.Assert(IsDrained, "freed before a complete drain");
        // Interlocked: the last releasing thread and the retry timer may both get here; one frees.
        bool won = Interlocked.CompareExchange(ref _state, StateFreed, StateDrained) == StateDrained;
        Debug.Assert(!won || InFlight == 0, "freed with pages in flight");
        return won;
    }

    /// <summary>
    /// The after-dispose recheck, after pages went into a cache or the ring (or were held) on a path that does not
    /// exclude Dispose: a Dispose that drained before they went in would have missed them, so drain again (quietly:
    /// see <see cref="DrainAfterDisposeQuietly"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void DrainIfDisposedSince()
    {
        if (!IsAlive)
            DrainAfterDisposeQuietly();
    }

    // =====================================================================================================
    // Destroy
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_destroy</c>: no allocation afterwards; the caches and the ring are emptied. When
    /// pages are still in flight the pool stays alive until the last one comes back (it is released, never
    /// recycled), retrying every second and warning "stalled pool shutdown" every 60 s. Call it from the
    /// consumer thread, or when the consumer no longer runs.
    /// </summary>
    /// <remarks>
    /// A release that throws (a DMA mapper's unmap) is rethrown after the shutdown has run to the end; the page
    /// stays in flight. This waits for other threads' per-CPU sections, which may be running the pool's init
    /// callback, DMA mapper or an event listener: do not call it while holding a lock that any of those take. The
    /// converse holds too: a thread that allocates or puts while Dispose may be running can wait for Dispose's
    /// drain, so it must not hold a lock that Dispose's callbacks (the DMA mapper's unmap) take.
    /// </remarks>
    public void Dispose()
    {
        if (!TryBeginDestroy())
            return;
        // The consumer's fast paths must see the pool closed and take their checked slow twins (the consumer is
        // quiescent while Dispose empties its cache, as the kernel's NAPI is disabled before page_pool_destroy).
        BlockCacheFastPaths();
        // Volatile: other put paths test the limit.
        Volatile.Write(ref _recycleLimit, 0);
        // Every thread executes a full barrier: a putter that filled a per-CPU cache before this point has its count
        // seen by the drains below; one after it sees the pool destroying and drains its own cache after its section.
        Interlocked.MemoryBarrierProcessWide();
        Interlocked.Exchange(ref _destroyStartedTicks, Stopwatch.GetTimestamp());
        _lastStallWarningTicks = Stopwatch.GetTimestamp();
        // A release that throws (a DMA mapper's unmap) does not stop the shutdown: that page stays in flight, every
        // other step still runs and the retry timer starts; the first exception is rethrown at the end.
        FirstException failed = default;
        try
        {
            StopIdleTrim();
            FreeFrags();
        }
        catch (Exception e)
        {
            failed.Keep(e);
        }
        ReleaseAllocCache(ref failed);
        ReleaseCache(_putBuffer, ref _hot.PutCount, ref failed);
        try
        {
            ReleaseAttempt();
        }
        catch (Exception e)
        {
            failed.Keep(e);
        }
        // Pages still out keep no mapping to memory the pool no longer controls (page_pool_scrub since 6.15).
        if (!IsFreed)
        {
            MarkDetached();
            UnmapAllTracked(ref failed);
        }
        if (!IsFreed)
        {
            var timer = new Timer(static s => ((PagePool)s!).ReleaseRetry(), this, Timeout.Infinite, Timeout.Infinite);
            // Interlocked (a full fence before the state read below): a thread that frees the pool after this
            // store takes the timer and disposes of it; one that freed it before, this thread sees below.
            Interlocked.Exchange(ref _retryTimer, timer);
            timer.Change(ReleaseRetryInterval, ReleaseRetryInterval);
            // The last page may have come back between ReleaseAttempt and the timer's creation.
            TryFreeAfterRelease();
            if (IsFreed)
                Interlocked.Exchange(ref _retryTimer, null)?.Dispose();
        }
        failed.ThrowIfAny();
    }

    /// <summary>The kernel's <c>page_pool_release</c>: empties ring and per-CPU caches; frees the pool when nothing is in flight.</summary>
    private void ReleaseAttempt()
    {
        // Until one drain has revoked every held per-CPU cache, empty or not, the pool is not freed: that drain
        // waits for any allocation inside a section, which may be taking pages from the provider into an empty
        // cache, and it is what makes every such page's Hold visible to whoever decides that none is in flight.
        // A provider take being set up (see BeginTake; its init callback may be the caller of this Dispose) holds
        // the drained state back too; the last such take to finish makes the transition (else the retry timer does).
        if (!TryCompleteDrain())
            DrainAfterDispose();
        long destroyCount = Interlocked.Increment(ref _destroyCount);
        var log = PagePoolEventSource.Log;
        if (log.IsEnabled(EventLevel.Informational, PagePoolEventSource.Keywords.Lifecycle))
        {
            long hold = TotalHold();
            long release = Volatile.Read(ref _release);
            log.Release(Id, hold - release, hold, release, destroyCount);
        }
        TryFreeAfterRelease();
    }

    /// <summary>
    /// Until it has happened once, a drain that revokes every per-CPU cache with no provider take being set up (see
    /// <see cref="BeginTake"/>); the pool is not freed before (see <see cref="ReleaseAttempt"/>).
    /// </summary>
    /// <returns>Whether no such drain is needed any more (false: a plain drain, if any, is the caller's to do).</returns>
    private bool TryCompleteDrain()
    {
        if (IsDrained)
            return false;
        // Volatile: decremented (a full fence after its Holds) by the allocating thread (EndTake).
        if (DrainAfterDispose(revokeAll: true) && Volatile.Read(ref _takesUnderWay) == 0)
            MarkDrained();
        return true;
    }

    /// <summary>
    /// The last provider take being set up that a Dispose saw under way has finished: complete the drain that
    /// Dispose could not, and free the pool if nothing is in flight. A release that throws is kept for the stall
    /// warning (the caller is an allocation, which must not fail for it); the retry timer tries again.
    /// </summary>
    private void CompleteDrainQuietly()
    {
        try
        {
            TryCompleteDrain();
            TryFreeAfterRelease();
        }
        catch (Exception e)
        {
            // Volatile: read by the retry timer's thread.
            Volatile.Write(ref _lastReleaseError, e);
        }
    }

    /// <summary>
    /// After a put or an allocation that went through a cache or the ring while the pool was being disposed: a
    /// Dispose that drained before it would have missed what it left there. A release that throws here must not
    /// turn the caller's success into a failure (a caller that retried would put twice): the exception is kept
    /// for the stall warning, and the retry timer drains again.
    /// </summary>
    private void DrainAfterDisposeQuietly()
    {
        try
        {
            DrainAfterDispose();
        }
        catch (Exception e)
        {
            // Volatile: read by the retry timer's thread.
            Volatile.Write(ref _lastReleaseError, e);
        }
    }

    /// <summary>
    /// After Dispose: releases the ring's pages and those of the per-CPU caches (all held caches when
    /// <paramref name="revokeAll"/>, else only those that hold pages).
    /// </summary>
    /// <returns>Whether every per-CPU cache was visited (false when the drain had to leave a held one alone).</returns>
    [SkipLocalsInit] // the stack buffer is written before it is read
    private bool DrainAfterDispose(bool revokeAll = false)
    {
        Span<nint> batch = stackalloc nint[AllocCacheRefill];
        int n;
        // Every page is released even when some releases throw: those pages stay in flight, the rest do not, and
        // the first exception is rethrown once the ring and every cache are empty.
        FirstException failed = default;
        while ((n = _ring.DequeueBurst(batch)) > 0)
            ReleaseEach(batch[..n], ref failed);
        bool complete = false;
        try
        {
            complete = EmptyPerCpuCaches(this, onlyNonEmpty: !revokeAll, static (c, pool) =>
            {
                FirstException first = default;
                pool.ReleaseCache(c.Items, ref c.Count, ref first);
                first.ThrowIfAny();
            });
        }
        catch (Exception e)
        {
            failed.Keep(e);
        }
        failed.ThrowIfAny();
        return complete;
    }

    private void ReleaseRetry()
    {
        if (IsFreed)
            return;
        try
        {
            ReleaseAttempt();
        }
        catch (Exception e)
        {
            // A release that threw on this timer thread (a DMA mapper's unmap) must not take the process down: the
            // page stays in flight, the next attempt tries the rest, and the stall warning carries the exception.
            // Volatile: also written by putters that drain after Dispose.
            Volatile.Write(ref _lastReleaseError, e);
        }
        if (IsFreed)
            return;
        long now = Stopwatch.GetTimestamp();
        if (Stopwatch.GetElapsedTime(Volatile.Read(ref _lastStallWarningTicks), now) >= StalledWarningInterval)
        {
            Volatile.Write(ref _lastStallWarningTicks, now);
            long seconds = (long)Stopwatch.GetElapsedTime(Volatile.Read(ref _destroyStartedTicks), now).TotalSeconds;
            long inflight = InFlight;
            StalledShutdownRaised?.Invoke(this, new StalledShutdownEventArgs(Id, inflight, seconds, Volatile.Read(ref _lastReleaseError)));
            var log = PagePoolEventSource.Log;
            if (log.IsEnabled(EventLevel.Warning, PagePoolEventSource.Keywords.Lifecycle))
                log.StalledShutdown(Id, inflight, seconds, DescribeLeaks());
        }
    }

    private Exception? _lastReleaseError; // the last release after Dispose that threw: Volatile, any thread

    /// <summary>Raised (on a timer thread) with each "stalled pool shutdown" warning.</summary>
    public event EventHandler<StalledShutdownEventArgs>? StalledShutdownRaised;

    private void TryFreeAfterRelease()
    {
        // See ReleaseAttempt: before the first complete drain, a Hold may still be on its way.
        if (!IsDrained)
            return;
        // Hold no longer moves once that drain is done (no allocation), so InFlight only falls.
        if (InFlight != 0)
            return;
        if (!TryMarkFreed())
            return;
        // Interlocked: Dispose may be storing the timer right now; whichever of the two takes it disposes of it.
        Interlocked.Exchange(ref _retryTimer, null)?.Dispose();
        s_pools.TryRemove(Id, out _);
        OnFreed();
        var log = PagePoolEventSource.Log;
        if (log.IsEnabled(EventLevel.Informational, PagePoolEventSource.Keywords.Lifecycle))
            log.PoolDestroyed(Id, TotalHold(), Volatile.Read(ref _release));
        _provider.Destroy(Binding);
        if (_ownsProvider)
            ((PageProvider)_provider).Dispose();
        if (_ppHandle.IsAllocated)
            _ppHandle.Free();
    }

    /// <summary>Throws <see cref="ObjectDisposedException"/> once Dispose has begun.</summary>
    private void ThrowIfDisposed()
    {
        if (!IsAlive)
            PoolThrowHelper.ThrowDisposed(Id);
    }
}
