using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace UnmanagedPool.Internal;

/// <summary>
/// A small stack of pages in front of the ring, one per CPU, for threads other than the consumer.
/// <para>
/// Ownership is sticky: a thread acquires a cache with one CAS and keeps it across calls, so a run of puts from
/// one thread costs no atomic operation until a batch goes to the ring. The owner word is a reference: null when
/// the cache is free, the holding thread's <see cref="PutterState"/> while a thread holds it, and
/// <see cref="Drainer"/> while a drain has it. A holder checks on every call that the word still names it; the
/// holder's identity and the ownership are one word, so no one can be the holder without the word saying so. The
/// CPU number is only a hint: a thread may migrate at any instruction and keep using the cache it holds. A holder
/// lets go when it finds at a flush that it runs on another CPU, or when it moves to another pool.
/// </para>
/// <para>
/// A drain (Dispose, UpdateNid, Trim, the consumer's last-resort steal) takes a held cache from its holder by
/// revocation, an asymmetric Dekker handshake: the holder marks itself busy (its section number turns odd) and then
/// checks the owner word; the drainer swaps the word from the holder to <see cref="Drainer"/>, runs a process-wide
/// memory barrier, and, when the holder's number is odd, waits until that number changes. Either the holder's busy
/// mark was visible to the drainer (which then waits for that one section to end: a holder that enters section
/// after section cannot starve it) or the holder's check runs after the barrier and sees that the cache is gone.
/// The holder pays a store and a load per call; the drainer, which runs rarely, pays the barrier.
/// </para>
/// The pages are stored inside the cache object, so a put reaches its slot from the cache's own address with no
/// load of an array reference first; slots past <see cref="Capacity"/> are never used and keep the hot words of
/// the cache allocated next off the last slots' cache lines.
/// </summary>
internal sealed class PerCpuCache
{
    /// <summary>Entries per cache (arbitrary: two ring batches).</summary>
    public const int Capacity = 64;

    /// <summary>Entries moved to the ring when the cache fills, and taken from it when it is empty.</summary>
    public const int Batch = Capacity / 2;

    /// <summary>The owner word's value while a drain has the cache (never a thread's state).</summary>
    public static readonly PutterState Drainer = PutterState.Sentinel();

    private PutterState? _owner;

    /// <summary>Pages in <see cref="Items"/>. Written by the owner only; other threads read it as a hint.</summary>
    public int Count;

    /// <summary>Slots after the last used one: a 128-byte gap (two cache lines) before whatever the heap puts next.</summary>
    public const int PadSlots = 16;

    private ItemSlots _items;

    /// <summary>The cached pages (NetMem*), oldest at index 0; <see cref="Count"/> of them are valid.</summary>
    public Span<nint> Items
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => MemoryMarshal.CreateSpan(ref ItemsRef, Capacity);
    }

    /// <summary>The first slot, for the put fast path's unchecked indexing (the count bounds the index).</summary>
    public ref nint ItemsRef
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref Unsafe.As<ItemSlots, nint>(ref _items);
    }

    /// <summary>The counters of the threads that used this cache, written by the owner only.</summary>
    public PoolCounters Stats;

    /// <summary>Times a thread acquired the cache (owner only): what sticky ownership keeps small.</summary>
    public long Acquisitions;

    /// <summary>The pool this cache belongs to.</summary>
    public readonly PagePool Pool;

    /// <summary>The CPU index this cache stands for.</summary>
    public readonly int Cpu;

    public PerCpuCache(PagePool pool, int cpu)
    {
        Pool = pool;
        Cpu = cpu;
    }

    /// <summary>Whether <paramref name="s"/> holds the cache now.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsHeldBy(PutterState s) =>
        // Volatile (acquire): a holder that still sees itself here also sees the cache as it left it.
        ReferenceEquals(Volatile.Read(ref _owner), s);

    /// <summary>
    /// <paramref name="s"/> acquires the cache if it is free. The caller is inside a section (its busy mark set),
    /// so a drain that revokes the cache right after this CAS waits for that section.
    /// </summary>
    public bool TryAcquire(PutterState s) =>
        // Interlocked: mutual exclusion between threads that picked the same cache (same CPU, or migrated).
        Volatile.Read(ref _owner) == null && Interlocked.CompareExchange(ref _owner, s, null) == null;

    /// <summary>The holder lets the cache go; false when a drain had already taken it (nothing is left to do then).</summary>
    public bool TryRelease(PutterState s) =>
        // Interlocked: a drainer may be revoking this holder at the same moment; exactly one of us changes the word.
        ReferenceEquals(Interlocked.CompareExchange(ref _owner, null, s), s);

    /// <summary>
    /// A drainer takes the cache, free or held: a held cache is revoked from its holder, waiting for the holder's
    /// current section (if any) to end. Returns false, leaving the cache alone, when it is held and the calling
    /// thread is itself inside a section (an init callback, DMA mapper or event handler that drains from within a
    /// put or alloc): it could wait on a section that waits on it. A Dispose then gets the cache from the
    /// section's own end or from the retry timer. Drains must not nest or run concurrently (the pool serializes
    /// them); release with <see cref="ReleaseDrained"/>. To take several caches with one barrier, use
    /// <see cref="BeginDrain"/> and <see cref="AwaitRevoked"/>.
    /// </summary>
    public bool TakeForDrain()
    {
        DrainTake take = BeginDrain(out PutterState? revoked);
        if (take == DrainTake.Skipped)
            return false;
        if (take == DrainTake.Revoked)
        {
            // Every thread executes a full barrier: see AwaitRevoked.
            Interlocked.MemoryBarrierProcessWide();
            if (revoked != null)
                AwaitRevoked(revoked);
        }
        return true;
    }

    /// <summary>
    /// The first half of <see cref="TakeForDrain"/>: the owner word becomes <see cref="Drainer"/>. For
    /// <see cref="DrainTake.Revoked"/> the cache is not the drainer's to use until a process-wide barrier has run
    /// after this call and <see cref="AwaitRevoked"/> has returned for <paramref name="revoked"/> (null when the
    /// holder was the calling thread itself, outside any section: nothing to wait for).
    /// </summary>
    public DrainTake BeginDrain(out PutterState? revoked)
    {
        revoked = null;
        PutterState? self = PutterState.CurrentOrNull;
        bool selfBusy = self != null && self.IsBusy;
        var spin = new SpinWait();
        while (true)
        {
            // Volatile: the current owner, to revoke exactly it.
            PutterState? holder = Volatile.Read(ref _owner);
            if (holder == null)
            {
                // Interlocked: as TryAcquire.
                if (Interlocked.CompareExchange(ref _owner, Drainer, null) == null)
                    return DrainTake.Free;
                continue;
            }
            if (selfBusy)
                return DrainTake.Skipped;
            if (ReferenceEquals(holder, Drainer))
                throw new InvalidOperationException("Per-CPU cache taken by two drains at once.");
            // Interlocked: revoke exactly this holder (it may be letting go at this moment).
            if (!ReferenceEquals(Interlocked.CompareExchange(ref _owner, Drainer, holder), holder))
            {
                spin.SpinOnce(sleep1Threshold: -1);
                continue;
            }
            if (!ReferenceEquals(holder, self))
                revoked = holder;
            return DrainTake.Revoked;
        }
    }

    /// <summary>
    /// The second half of <see cref="TakeForDrain"/>, after a process-wide barrier that followed the revocation:
    /// a holder whose busy mark the barrier did not make visible here will see the owner word changed when it
    /// next checks it; one whose mark is visible is waited for until that section ends.
    /// </summary>
    public static void AwaitRevoked(PutterState holder)
    {
        var spin = new SpinWait();
        // Volatile (acquire): pairs with the holder's release at the end of its section, so its writes to Count
        // and Items are visible here. A section is short and never waits on a drain; the wait ends with the
        // section seen open, not at a moment the holder is outside every section.
        int open = Volatile.Read(ref holder.Section);
        if ((open & 1) == 0)
            return;
        // Volatile (acquire): as above, on each re-read.
        while (Volatile.Read(ref holder.Section) == open)
            spin.SpinOnce(sleep1Threshold: -1);
    }

    /// <summary>A drain lets the cache go.</summary>
    public void ReleaseDrained()
    {
        // Interlocked: only the drain can hold the word now; a failure means two drains held the cache at once.
        if (!ReferenceEquals(Interlocked.CompareExchange(ref _owner, null, Drainer), Drainer))
            throw new InvalidOperationException("Per-CPU cache released by a drain that did not hold it.");
    }
}

/// <summary>The cache's slots, inline in the cache object.</summary>
[InlineArray(PerCpuCache.Capacity + PerCpuCache.PadSlots)]
internal struct ItemSlots
{
    private nint _first;
}

/// <summary>What <see cref="PerCpuCache.BeginDrain"/> did.</summary>
internal enum DrainTake
{
    /// <summary>Left alone: held, and the drainer is inside a section itself.</summary>
    Skipped,

    /// <summary>Taken while free: the drainer may use it at once.</summary>
    Free,

    /// <summary>Taken from a holder: usable after a process-wide barrier and <see cref="PerCpuCache.AwaitRevoked"/>.</summary>
    Revoked,
}

/// <summary>
/// A thread's side of sticky per-CPU cache ownership: the cache it holds (at most one, of one pool) and its busy
/// mark. Created on a thread's first put or alloc from outside the consumer; the cache it holds keeps it
/// reachable after the thread exits, with <see cref="Section"/> even, so a drain can always revoke a dead thread's
/// cache.
/// </summary>
internal sealed class PutterState
{
    [ThreadStatic]
    private static PutterState? t_current;

    private PutterState(int managedThreadId) => ManagedThreadId = managedThreadId;

    /// <summary>
    /// The managed thread id of the thread this state belongs to (0 for <see cref="PerCpuCache.Drainer"/>): one
    /// thread-static lookup serves both the consumer test and the per-CPU cache, where
    /// <see cref="Environment.CurrentManagedThreadId"/> would cost a second, slower one.
    /// </summary>
    public readonly int ManagedThreadId;

    /// <summary>
    /// The thread's section number: odd while it is inside a section that uses <see cref="Cache"/>, even outside;
    /// each entry and each exit adds one (wrapping keeps the parity). Written by its thread only.
    /// </summary>
    public int Section;

    /// <summary>Whether the thread is inside a section. Its own thread, or a drainer's racy first look.</summary>
    public bool IsBusy
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (Section & 1) != 0;
    }

    /// <summary>The cache this thread holds or last held (check with <see cref="PerCpuCache.IsHeldBy"/>). Its thread only.</summary>
    public PerCpuCache? Cache;

    /// <summary>The calling thread's state, created on first use.</summary>
    public static PutterState Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => t_current ?? Create();
    }

    /// <summary>The calling thread's state, or null when it never used a per-CPU cache.</summary>
    public static PutterState? CurrentOrNull => t_current;

    /// <summary>Whether the calling thread is inside a per-CPU section (drains from there must not block).</summary>
    public static bool InSection => t_current is { } s && s.IsBusy;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static PutterState Create() => t_current = new PutterState(Environment.CurrentManagedThreadId);

    /// <summary>A state that is no thread's, for the owner word's sentinel values.</summary>
    public static PutterState Sentinel() => new(0);
}
