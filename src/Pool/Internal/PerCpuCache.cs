using System.Runtime.CompilerServices;

namespace UnmanagedPool.Internal;

/// <summary>
/// A small stack of pages in front of the ring, one per CPU, for threads other than the consumer.
/// <para>
/// Ownership is sticky: a thread acquires a cache with one CAS and keeps it across calls (its
/// <see cref="PutterState"/> remembers the cache and the token it acquired), so a run of puts from one thread
/// costs no atomic operation at all until a batch goes to the ring. The CPU number is only a hint: a thread may
/// migrate at any instruction and keep using the cache it holds, because correctness rests on the token, not on
/// the CPU. A holder lets go when it finds at a flush that it runs on another CPU, or when it moves to another
/// pool.
/// </para>
/// <para>
/// The owner word is even when the cache is free and odd when held; every acquire, release and revocation moves
/// it forward, so a token never comes back. A drain (Dispose, UpdateNid, Trim, the consumer's last-resort steal)
/// takes a held cache from its holder by revocation, an asymmetric Dekker handshake: the holder marks itself
/// busy with a plain store and then checks its token; the drainer moves the owner word on, runs a process-wide
/// memory barrier, and waits until the holder is no longer busy. Either the holder's busy mark was visible to
/// the drainer (which then waits for the holder's section to end) or the holder's token check runs after the
/// barrier and sees that the cache is gone. The holder pays a plain store and a load per call; the drainer, which
/// runs rarely, pays the barrier.
/// </para>
/// Each cache is a separate object followed on the heap by its own item array, which keeps two caches' hot
/// words off a shared cache line.
/// </summary>
internal sealed class PerCpuCache
{
    /// <summary>Entries per cache (arbitrary: two ring batches).</summary>
    public const int Capacity = 64;

    /// <summary>Entries moved to the ring when the cache fills, and taken from it when it is empty.</summary>
    public const int Batch = Capacity / 2;

    private long _owner;

    /// <summary>The thread holding the cache through a token, or null; read by a drainer that revokes it.</summary>
    public PutterState? Holder;

    /// <summary>Pages in <see cref="Items"/>. Written by the owner only; other threads read it as a hint.</summary>
    public int Count;

    /// <summary>The cached pages (NetMem*), oldest at index 0.</summary>
    public readonly nint[] Items = new nint[Capacity];

    /// <summary>The counters of the threads that used this cache, written by the owner only.</summary>
    public PoolCounters Stats;

    /// <summary>Times a thread acquired the cache (owner only): what sticky ownership keeps small.</summary>
    public long Acquisitions;

    /// <summary>The pool this cache belongs to.</summary>
    public readonly object Pool;

    /// <summary>The CPU index this cache stands for.</summary>
    public readonly int Cpu;

    public PerCpuCache(object pool, int cpu)
    {
        Pool = pool;
        Cpu = cpu;
    }

    /// <summary>The owner word: even when free, odd when held (the holder's token).</summary>
    public long Owner
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        // Volatile (acquire): a holder that still sees its token also sees the cache as it left it.
        get => Volatile.Read(ref _owner);
    }

    /// <summary>Acquires a free cache; the token is the odd owner word now held.</summary>
    public bool TryAcquire(out long token)
    {
        long o = Volatile.Read(ref _owner);
        // Interlocked: mutual exclusion between threads that picked the same cache (same CPU, or migrated).
        if ((o & 1) == 0 && Interlocked.CompareExchange(ref _owner, o + 1, o) == o)
        {
            token = o + 1;
            return true;
        }
        token = 0;
        return false;
    }

    /// <summary>
    /// A holder lets the cache go; false when it had already been revoked (then the drainer owns it and nothing
    /// is left to do).
    /// </summary>
    public bool TryRelease(long token) =>
        // Interlocked: a drainer may be revoking this token at the same moment; exactly one of us moves the word.
        Interlocked.CompareExchange(ref _owner, token + 1, token) == token;

    /// <summary>
    /// A drainer takes the cache, free or held: a held cache is revoked from its holder, waiting for the holder's
    /// current section (if any) to end. Returns the drainer's token for <see cref="ReleaseDrained"/>, or 0 for a
    /// held cache when the calling thread is itself inside a section (an event handler or init callback that drains
    /// from within a put): that cache is left alone; a Dispose gets it from the section's own end or the retry timer.
    /// Drainers must not run concurrently with each other on one cache (the pool serializes them).
    /// </summary>
    public long TakeForDrain()
    {
        PutterState? self = PutterState.CurrentOrNull;
        var spin = new SpinWait();
        while (true)
        {
            long o = Volatile.Read(ref _owner);
            if ((o & 1) == 0)
            {
                // Interlocked: as TryAcquire.
                if (Interlocked.CompareExchange(ref _owner, o + 1, o) == o)
                    return o + 1;
                continue;
            }
            // A drain from inside a section of the calling thread (an init callback or event handler that
            // disposes or trims) leaves held caches alone: it could be waiting on a section that waits on it.
            if (self != null && self.Busy != 0)
                return 0;
            // Interlocked: revoke exactly token o (the holder may be letting it go at this moment).
            if (Interlocked.CompareExchange(ref _owner, o + 2, o) != o)
            {
                spin.SpinOnce(sleep1Threshold: -1);
                continue;
            }
            // Every thread executes a full barrier: a holder whose busy mark is not visible below will see the
            // new owner word when it next checks its token.
            Interlocked.MemoryBarrierProcessWide();
            // Volatile: the holder published itself before checking its token (see PagePool.EnterPerCpuSlow).
            PutterState? holder = Volatile.Read(ref Holder);
            if (holder != null && !ReferenceEquals(holder, self))
            {
                // Volatile (acquire): pairs with the holder's release at the end of its section, so its writes to
                // Count and Items are visible here. A section is short and never waits on a drainer.
                while (Volatile.Read(ref holder.Busy) != 0)
                    spin.SpinOnce(sleep1Threshold: -1);
            }
            Holder = null;
            return o + 2;
        }
    }

    /// <summary>A drainer lets the cache go (the token from <see cref="TakeForDrain"/>).</summary>
    public void ReleaseDrained(long token) =>
        // Volatile (release): the drainer's writes to Count/Items happen before the next owner's acquire.
        Volatile.Write(ref _owner, token + 1);
}

/// <summary>
/// A thread's side of sticky per-CPU cache ownership: the cache it holds (at most one, of one pool), the token it
/// holds it by, and its busy mark. Created on a thread's first put or alloc from outside the consumer; it stays
/// reachable from the cache it last held after the thread exits, with <see cref="Busy"/> at 0, so a drain can
/// always revoke a dead thread's cache.
/// </summary>
internal sealed class PutterState
{
    [ThreadStatic]
    private static PutterState? t_current;

    /// <summary>Nonzero while the thread is inside a section that uses <see cref="Cache"/>. Written by its thread only.</summary>
    public int Busy;

    /// <summary>The cache this thread holds, or last held (check <see cref="Token"/> against its owner word).</summary>
    public PerCpuCache? Cache;

    /// <summary>The owner word value this thread acquired <see cref="Cache"/> with.</summary>
    public long Token;

    /// <summary>The calling thread's state, created on first use.</summary>
    public static PutterState Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => t_current ?? Create();
    }

    /// <summary>The calling thread's state, or null when it never used a per-CPU cache.</summary>
    public static PutterState? CurrentOrNull => t_current;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static PutterState Create() => t_current = new PutterState();
}
