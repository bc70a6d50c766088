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

// The per-CPU cache set, holder side (enter, exit, migrate) and drainer side (the drain barrier, emptying,
// snapshot), and the shared allocation that goes through it.
public sealed unsafe partial class PagePool
{
    /// <summary>Allocation from a thread other than the consumer: per-CPU cache, then ring, then provider.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private NetMemRef SharedAlloc() => SharedAlloc(PutterState.Current);

    /// <summary>Allocation by a thread other than the consumer, whose state <paramref name="s"/> the caller looked up.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private NetMemRef SharedAlloc(PutterState s)
    {
        ThrowIfDisposed();
        PerCpuCache? c = EnterPerCpu(s);
        if (c == null)
            return SharedAllocUncached();
        try
        {
            // Checked again inside the section: a Dispose that began after the check above revokes this cache and
            // waits for the section, so a refill from the provider here is counted before it decides whether
            // pages are in flight; one that began before it is seen here (the cache was acquired or kept after
            // its revocation), and nothing is taken.
            ThrowIfDisposed();
            NetMem* d;
            if (c.Count > 0)
            {
                d = (NetMem*)c.Items[--c.Count];
                ClaimForHandOut(d);
                c.Stats.Fast++;
            }
            else
            {
                c.Count = _ring.DequeueBurst(c.Items[..PerCpuCache.Batch]);
                int nid = _nid;
                if (nid >= 0 && c.Count > 0)
                    WaiveForeignNodes(nid, c.Items, ref c.Count, ref c.Stats);
                if (c.Count > 0)
                {
                    d = (NetMem*)c.Items[--c.Count];
                    ClaimForHandOut(d);
                    c.Stats.Refill++;
                }
                else
                {
                    c.Stats.Empty++;
                    NetMemRef fresh = AllocPagesSlow(ref c.Stats, c.Items, new PerCpuCacheCount(c));
                    return fresh;
                }
            }
            if (_debug)
                DebugOnAlloc(d);
            return new NetMemRef(d);
        }
        finally
        {
            ExitPerCpu(s);
            // A Dispose that drained the caches before this refill filled one would have missed its pages.
            DrainIfDisposedSince();
        }
    }

    /// <summary>Every per-CPU cache is busy: take one page straight from the ring, else one from the provider.</summary>
    private NetMemRef SharedAllocUncached()
    {
        if (_ring.TryDequeue(out nint p))
        {
            NetMem* d = (NetMem*)p;
            ClaimForHandOut(d);
            Interlocked.Increment(ref _shared.Refill);
            if (_debug)
                DebugOnAlloc(d);
            return new NetMemRef(d);
        }
        Interlocked.Increment(ref _shared.Empty);
        BeginTake();
        try
        {
            ThrowIfDisposed();
            NetMemRef fresh = default;
            if (TakeFromProvider(new Span<NetMemRef>(ref fresh)) == 0)
                return default;
            if (!SetupPage(fresh.Descriptor))
                return default;
            Interlocked.Increment(ref _shared.Hold);
            Interlocked.Increment(ref _order > 0 ? ref _shared.SlowHighOrder : ref _shared.Slow);
            TraceHold(new ReadOnlySpan<NetMemRef>(in fresh));
            fresh.Value.PpRefCount = 1;
            if (_debug)
                DebugOnAlloc(fresh.Descriptor);
            return fresh;
        }
        finally
        {
            EndTake();
        }
    }

    /// <summary>
    /// Opens a section that uses the calling thread's per-CPU cache of this pool (see <see cref="PerCpuCache"/>):
    /// the cache it already holds, with no atomic operation, or one acquired now. Null when none can be had (every
    /// cache held by other threads, or a nested call from inside a section); the caller then uses the ring
    /// directly, and has no section to close. Otherwise close it with <see cref="ExitPerCpu"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private PerCpuCache? EnterPerCpu(PutterState s)
    {
        PerCpuCache? c = TryEnterHeldPerCpu(s);
        if (c != null || s.IsBusy)
            return c;
        // Volatile: as in TryEnterHeldPerCpu; the acquire runs inside the section.
        Volatile.Write(ref s.Section, s.Section + 1);
        return EnterPerCpuSlow(s);
    }

    /// <summary>
    /// Opens a section on the per-CPU cache of this pool that the calling thread already holds, with no atomic
    /// operation. Null, with no section open, when the thread holds none of this pool's (or lost it to a drain) or
    /// is already inside a section. Otherwise close it with <see cref="ExitPerCpu"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private PerCpuCache? TryEnterHeldPerCpu(PutterState s)
    {
        int section = s.Section;
        PerCpuCache? c = s.Cache;
        if ((section & 1) != 0 || c == null || !ReferenceEquals(c.Pool, this))
            return null;
        // Volatile: keeps the compiler from moving this store past the owner check below (a plain store on x64).
        // The processor may still reorder the two; a revoking drainer's process-wide barrier orders them for it:
        // either it sees the section open and waits for ExitPerCpu, or the check sees the cache gone.
        Volatile.Write(ref s.Section, section + 1);
        if (c.IsHeldBy(s))
            return c;
        // Volatile (release): as in ExitPerCpu.
        Volatile.Write(ref s.Section, section + 2);
        return null;
    }

    /// <summary>The thread holds no cache of this pool (or lost it to a drain): let go of the old one, acquire one.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private PerCpuCache? EnterPerCpuSlow(PutterState s)
    {
        PerCpuCache? c = _perCpu.Acquire(s);
        if (c == null)
            ExitPerCpu(s);
        return c;
    }

    /// <summary>For tests: see <see cref="PerCpuCacheSet.Snapshot"/>.</summary>
    internal (long Acquisitions, int Pooled) PerCpuSnapshot() => _perCpu.Snapshot();

    /// <summary>See <see cref="PerCpuCacheSet.EmptyAll"/>.</summary>
    private bool EmptyPerCpuCaches<TState>(TState state, bool onlyNonEmpty, Action<PerCpuCache, TState> empty) =>
        _perCpu.EmptyAll(state, onlyNonEmpty, empty);

    /// <summary>Whether the calling thread is inside a drain of this pool's per-CPU caches.</summary>
    private bool IsDrainingOnThisThread => _perCpu.IsDrainingOnThisThread;


    /// <summary>Closes the section <see cref="EnterPerCpu"/> opened.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ExitPerCpu(PutterState s) =>
        // Volatile (release): the section's writes to the cache happen before a drainer sees the number move on.
        Volatile.Write(ref s.Section, s.Section + 1);

    /// <summary>
    /// Inside a section, after a flush to the ring: a holder that now runs on another CPU lets its cache go, so
    /// the next call takes the cache of the CPU it is on (the CPU is a hint; this keeps it a good one).
    /// </summary>
    private void LetGoIfMigrated(PutterState s, PerCpuCache c)
    {
        if ((int)((uint)Thread.GetCurrentProcessorId() % (uint)_perCpu.Caches.Length) == c.Cpu)
            return;
        s.Cache = null;
        c.TryRelease(s);
    }
}
