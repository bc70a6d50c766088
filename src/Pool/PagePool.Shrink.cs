using System.Diagnostics.Tracing;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UnmanagedPool.Internal;
using UnmanagedPool.Native;

namespace UnmanagedPool;

// Giving memory back: Trim() down to the low-water mark, trimming when idle, and the memory limit. All of it runs
// on slow paths (the provider refill, a full alloc cache) or on a timer; the fast path does no extra work.
public sealed unsafe partial class PagePool
{
    private long _allocFailed;      // slow-path takes that got nothing from the provider: Interlocked, any thread
    private long _allocOverLimit;   // slow-path takes refused by MemoryLimit: Interlocked, any thread
    private long _trimmed;          // pages released by Trim: Interlocked, any thread
    private int _consumerTrimPending; // 1 when a Trim from another thread left the alloc cache above its share
    private int _consumerKeep;      // the alloc cache's share of the low-water mark for that deferred trim
    private readonly IdleTrimmer _idleTrimmer = new(); // IdleTrimDelay: its timer and idle state
    private readonly Lock _trimLock = new();

    /// <summary>
    /// Gives pages idle in the pool back to the provider, keeping <see cref="PagePoolOptions.LowWaterMark"/> pages,
    /// then (when the pool created its own provider) gives empty regions back to the OS. Pages are kept region by
    /// region, fullest first, so that the pages let go leave whole regions empty. Any thread: the ring and the per-CPU
    /// caches are trimmed at once; the consumer's alloc cache is trimmed at once on the consumer thread, else by the
    /// consumer itself the next time its alloc cache overflows.
    /// </summary>
    /// <returns>Pages given back to the provider.</returns>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    /// <remarks>
    /// This waits for other threads' per-CPU sections, which may be running the pool's init callback, DMA mapper or
    /// an event listener: do not call it while holding a lock that any of those take.
    /// </remarks>
    public long Trim()
    {
        ThrowIfDisposed();
        // A Trim from a callback inside a drain, or from inside a per-CPU section while another Trim runs, must not
        // block on a drain that may be waiting for its caller: it gives nothing back this time.
        if (IsDrainingOnThisThread)
            return 0;
        if (PutterState.InSection)
        {
            if (!_trimLock.TryEnter())
                return 0;
        }
        else
        {
            _trimLock.Enter();
        }
        long released;
        try
        {
            released = TrimLocked();
        }
        finally
        {
            _trimLock.Exit();
        }
        if (_ownsProvider)
            ((PageProvider)_provider).Trim();
        return released;
    }

    private long TrimLocked()
    {
        int keep = Options.LowWaterMark;
        bool onConsumer = OnConsumerThread();
        var pages = new List<nint>();
        if (onConsumer)
        {
            TakeAllConsumerCached(pages);
        }
        else
        {
            int cached = ConsumerCachedHint;
            int share = Math.Min(cached, keep);
            keep -= share;
            if (cached > share)
            {
                _consumerKeep = share;
                // Volatile: the consumer reads the flag on its overflow path and then _consumerKeep.
                Volatile.Write(ref _consumerTrimPending, 1);
            }
        }
        // Empty caches too: a cache held by a thread that has exited comes back to the threads still putting.
        EmptyPerCpuCaches(pages, onlyNonEmpty: false, static (c, list) =>
        {
            for (int i = 0; i < c.Count; i++)
                list.Add(c.Items[i]);
            c.Count = 0;
        });
        Span<nint> batch = stackalloc nint[AllocCacheRefill];
        int n;
        while ((n = _ring.DequeueBurst(batch)) > 0)
            for (int i = 0; i < n; i++)
                pages.Add(batch[i]);

        nint[] toRelease = [];
        if (pages.Count > keep)
        {
            // Keep the pages of the regions holding the most pooled pages, so the rest empties whole regions.
            var perRegion = new Dictionary<nint, int>();
            foreach (nint p in pages)
            {
                nint region = new NetMemRef((NetMem*)p).RegionBase;
                perRegion[region] = perRegion.GetValueOrDefault(region) + 1;
            }
            pages.Sort((a, b) =>
            {
                nint ra = new NetMemRef((NetMem*)a).RegionBase, rb = new NetMemRef((NetMem*)b).RegionBase;
                int byCount = perRegion[rb].CompareTo(perRegion[ra]);
                return byCount != 0 ? byCount : ra != rb ? ra.CompareTo(rb) : a.CompareTo(b);
            });
            toRelease = pages.GetRange(keep, pages.Count - keep).ToArray();
            pages.RemoveRange(keep, pages.Count - keep);
        }

        // Every page is released even when one release throws (a DMA mapper's unmap); that one stays in flight and
        // is not counted as trimmed.
        FirstException failed = default;
        long released = ReleaseEach(toRelease, ref failed);
        Interlocked.Add(ref _trimmed, released); // Interlocked: read by GetStats on any thread
        // The kept pages go back whatever happened above.
        int next = 0;
        if (onConsumer)
        {
            // Kept pages refill the alloc cache first, the rest go to the ring.
            next = StashInAllocCache(pages);
        }
        var refused = new List<nint>();
        for (; next < pages.Count; next++)
        {
            if (!_ring.TryEnqueue(pages[next]))
                refused.Add(pages[next]);
        }
        ReleaseEach(CollectionsMarshal.AsSpan(refused), ref failed);
        // A Dispose that ran while we held pages would have missed them.
        DrainIfDisposedSince();
        failed.ThrowIfAny();
        return released;
    }

    /// <summary>Consumer thread only, on alloc-cache overflow: the trim another thread asked for.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ConsumerTrimDeferred()
    {
        // Volatile: pairs with the write in TrimLocked.
        Volatile.Write(ref _consumerTrimPending, 0);
        // The put buffer is the ring's front: its pages go first; then the oldest entries, at the bottom of the
        // cache (the rest slide down). Both are right before any release, so a release that throws leaves no
        // released page in them; a page whose release threw stays in flight and is not counted as trimmed.
        Span<nint> trimmed = stackalloc nint[PutBufferSize + AllocCacheSize];
        trimmed = TakeConsumerCachedAbove(_consumerKeep, trimmed);
        FirstException failed = default;
        int released = ReleaseEach(trimmed, ref failed);
        Interlocked.Add(ref _trimmed, released); // Interlocked: read by GetStats on any thread
        failed.ThrowIfAny();
    }

    /// <summary>
    /// Every slow-path take from the provider passes here first: starts the idle-trim timer on the first one, and
    /// enforces <see cref="PagePoolOptions.MemoryLimit"/> (approximately: threads racing in the slow path may pass it
    /// by one bulk each).
    /// </summary>
    /// <returns>How many pages may be taken (0 refuses).</returns>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private int AdmitSlowPath(int want)
    {
        if (!_idleTrimmer.Started)
            _idleTrimmer.Start(this);
        long limit = Options.MemoryLimit;
        if (limit <= 0)
            return want;
        long room = limit / BufferSize - InFlight;
        if (room <= 0)
        {
            Interlocked.Increment(ref _allocOverLimit); // Interlocked: any thread's slow path
            return 0;
        }
        return (int)Math.Min(want, room);
    }

    private void CountAllocFailed() => Interlocked.Increment(ref _allocFailed); // Interlocked: any thread's slow path

    /// <summary>Test hook: whether the idle-trim timer is running.</summary>
    internal bool IdleTrimArmed => _idleTrimmer.Armed;

    private void StopIdleTrim() => _idleTrimmer.Stop();

    /// <summary>
    /// Timer thread, one tick of the <see cref="IdleTrimmer"/>: trims once the pool has allocated nothing for
    /// <see cref="PagePoolOptions.IdleTrimDelay"/> (the trimmer decides from the allocation counters), then gives
    /// empty regions back. A tick that finds a Trim running skips. May throw: the trimmer keeps and reports it.
    /// </summary>
    internal void IdleTrimTick(IdleTrimmer trimmer)
    {
        if (IsDisposed || !_trimLock.TryEnter())
            return;
        try
        {
            PagePoolStats s = GetStats();
            long signature = s.AllocFast + s.AllocSlow + s.AllocSlowHighOrder + s.AllocRefill + s.AllocEmpty;
            if (!trimmer.ShouldTrim(signature, Stopwatch.GetTimestamp()))
                return;
            TrimLocked();
        }
        finally
        {
            _trimLock.Exit();
        }
        try
        {
            if (_ownsProvider && !IsDisposed)
                ((PageProvider)_provider).Trim();
        }
        catch (ObjectDisposedException)
        {
            // The pool was freed meanwhile and disposed its provider.
        }
    }

    /// <summary>
    /// A release that threw where no caller can take the exception (a timer thread): keep it for the stall warning
    /// and report it.
    /// </summary>
    internal void ReportBackgroundReleaseFailure(string operation, Exception e)
    {
        // Volatile: read by the retry timer's thread for the stall warning.
        Volatile.Write(ref _lastReleaseError, e);
        var log = PagePoolEventSource.Log;
        if (log.IsEnabled(EventLevel.Warning, PagePoolEventSource.Keywords.Lifecycle))
            log.ReleaseFailed(Id, operation, e.ToString());
    }

    /// <summary>Test hook: the last release that threw where no caller could take the exception.</summary>
    internal Exception? LastReleaseError =>
        // Volatile: written by timer threads and by putters that drain after Dispose.
        Volatile.Read(ref _lastReleaseError);
}
