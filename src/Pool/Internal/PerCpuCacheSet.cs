using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace UnmanagedPool.Internal;

/// <summary>
/// A pool's per-CPU caches and the drainer side of their ownership protocol (see <see cref="PerCpuCache"/>): the
/// acquisition of a cache by a thread that holds none, the drain lock and barrier that take every cache (revoking
/// held ones, one process-wide barrier for all), stealing from the caches, and a snapshot for tests. The holder
/// side's fast half (entering and leaving a section on the cache a thread already holds) stays inline in the
/// pool's put and alloc paths.
/// </summary>
internal sealed class PerCpuCacheSet
{
    /// <summary>The caches, one per CPU index.</summary>
    public readonly PerCpuCache[] Caches;

    private readonly Lock _drainLock = new();  // one drainer at a time revokes per-CPU caches
    private readonly PutterState?[] _revoked;  // the drain's scratch (under _drainLock): holders revoked
    private readonly bool[] _taken;            // and caches taken, one entry per per-CPU cache

    /// <summary>One cache per CPU (<paramref name="cpus"/> of them), belonging to <paramref name="pool"/>.</summary>
    public PerCpuCacheSet(PagePool pool, int cpus)
    {
        Caches = new PerCpuCache[cpus];
        _revoked = new PutterState?[cpus];
        _taken = new bool[cpus];
        for (int i = 0; i < cpus; i++)
            Caches[i] = new PerCpuCache(pool, i);
    }

    /// <summary>
    /// Inside a section <paramref name="s"/> opened: the thread holds no cache of this pool (or lost it to a drain),
    /// so it lets go of the old one and acquires one, starting with the cache of the CPU it runs on. Null when every
    /// cache is held by another thread; the caller then closes its section.
    /// </summary>
    public PerCpuCache? Acquire(PutterState s)
    {
        PerCpuCache? held = s.Cache;
        s.Cache = null;
        held?.TryRelease(s);            // another pool's cache; false when a drain took it meanwhile
        PerCpuCache[] caches = Caches;
        int start = (int)((uint)Thread.GetCurrentProcessorId() % (uint)caches.Length);
        for (int i = 0; i < caches.Length; i++)
        {
            PerCpuCache c = caches[(start + i) % caches.Length];
            // The busy mark is already set: a drain that revokes the cache right after this CAS waits for us.
            if (!c.TryAcquire(s))
                continue;
            c.Acquisitions++;
            s.Cache = c;
            return c;
        }
        return null;
    }

    /// <summary>
    /// For tests, a racy sum over the per-CPU caches: how many times threads acquired one (sticky ownership keeps
    /// this per batch, not per call) and how many pages they hold now.
    /// </summary>
    public (long Acquisitions, int Pooled) Snapshot()
    {
        long acquisitions = 0;
        int pooled = 0;
        foreach (PerCpuCache c in Caches)
        {
            // Volatile: written by each cache's holder.
            acquisitions += Volatile.Read(ref c.Acquisitions);
            pooled += Volatile.Read(ref c.Count);
        }
        return (acquisitions, pooled);
    }

    /// <summary>
    /// Takes every per-CPU cache (only those holding pages when <paramref name="onlyNonEmpty"/>), revoking held ones,
    /// and hands each to <paramref name="empty"/>, which must leave it empty. A cache held by another thread while
    /// the calling thread is inside a section is skipped. Drains run one at a time; one process-wide barrier
    /// covers all the caches a drain revokes, however many CPUs there are.
    /// Returns false when a cache was skipped or the drain declined (see <see cref="EnterDrain"/>).
    /// </summary>
    public bool EmptyAll<TState>(TState state, bool onlyNonEmpty, Action<PerCpuCache, TState> empty)
    {
        if (!EnterDrain())
            return false;
        PerCpuCache[] caches = Caches;
        // Owned by the drain lock's holder: which caches this drain took, and from which holders.
        PutterState?[] revoked = _revoked;
        bool[] taken = _taken;
        bool complete = true;
        FirstException failed = default;
        try
        {
            bool anyRevoked = false;
            for (int i = 0; i < caches.Length; i++)
            {
                PerCpuCache c = caches[i];
                // Volatile: Count is written by the cache's holder; an empty cache needs no revocation.
                if (onlyNonEmpty && Volatile.Read(ref c.Count) == 0)
                    continue;
                switch (c.BeginDrain(out revoked[i]))
                {
                    case DrainTake.Skipped:
                        complete = false;
                        break;
                    case DrainTake.Free:
                        taken[i] = true;
                        break;
                    case DrainTake.Revoked:
                        taken[i] = true;
                        anyRevoked = true;
                        break;
                }
            }
            if (anyRevoked)
            {
                // One barrier for every cache revoked above (see PerCpuCache): each thread executes a full barrier,
                // after which a holder either is seen in its section below or sees its cache gone.
                Interlocked.MemoryBarrierProcessWide();
                for (int i = 0; i < caches.Length; i++)
                {
                    if (revoked[i] is { } holder)
                        PerCpuCache.AwaitRevoked(holder);
                }
            }
            for (int i = 0; i < caches.Length; i++)
            {
                if (!taken[i])
                    continue;
                // A cache whose emptying threw (a release's unmap) does not keep the others from being emptied.
                try
                {
                    empty(caches[i], state);
                    Debug.Assert((uint)caches[i].Count <= PerCpuCache.Capacity, "per-CPU cache count out of range");
                }
                catch (Exception e)
                {
                    failed.Keep(e);
                }
            }
        }
        finally
        {
            // Every cache taken goes back, even when emptying one threw.
            for (int i = 0; i < caches.Length; i++)
            {
                revoked[i] = null;
                if (!taken[i])
                    continue;
                taken[i] = false;
                caches[i].ReleaseDrained();
            }
            _drainLock.Exit();
        }
        failed.ThrowIfAny();
        return complete;
    }

    /// <summary>Whether the calling thread is inside a drain of these caches.</summary>
    public bool IsDrainingOnThisThread => _drainLock.IsHeldByCurrentThread;

    /// <summary>
    /// Takes the drain lock, or declines: a drain nested in another on the same thread (a DMA mapper or event
    /// handler called while a drain releases pages) would take caches the outer drain holds, and a drain from
    /// inside a per-CPU section must not block on a drain that may be waiting for that section. Those drains do
    /// nothing; a Dispose's retry timer finishes the job.
    /// </summary>
    public bool EnterDrain()
    {
        if (IsDrainingOnThisThread)
            return false;
        if (PutterState.InSection)
            return _drainLock.TryEnter();
        _drainLock.Enter();
        return true;
    }

    /// <summary>
    /// Takes up to <c>batch.Length</c> pages from the per-CPU caches (revoking held ones), for an allocation that
    /// found the ring empty and the provider out of pages; nothing when a drain cannot be entered now.
    /// </summary>
    public int Steal(Span<nint> batch)
    {
        int n = 0;
        if (!EnterDrain())
            return 0;
        try
        {
            foreach (PerCpuCache c in Caches)
            {
                if (n == batch.Length)
                    break;
                // Volatile: Count is written by the cache's holder; an empty cache is not worth a revocation.
                if (Volatile.Read(ref c.Count) == 0 || !c.TakeForDrain())
                    continue;
                int take = Math.Min(c.Count, batch.Length - n);
                for (int k = 0; k < take; k++)
                    batch[n++] = c.Items[--c.Count];
                c.ReleaseDrained();
            }
        }
        finally
        {
            _drainLock.Exit();
        }
        return n;
    }
}
