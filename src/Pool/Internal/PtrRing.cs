using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UnmanagedPool.Native;

namespace UnmanagedPool.Internal;

/// <summary>
/// Bounded lock-free multi-producer multi-consumer ring of pointer-sized values with bulk (burst) enqueue and
/// dequeue: the page pool's <c>ptr_ring</c>, built the DPDK <c>rte_ring</c> way. Each side has a head (claimed
/// by CAS) and a tail (published in claim order); a batch of n costs one CAS and one release store, whatever n.
/// </summary>
/// <remarks>
/// Invariants (indexes are free-running 32-bit counters, compared modulo 2^32):
/// <c>consTail ≤ consHead ≤ prodTail ≤ prodHead ≤ consTail + Capacity</c>. Slots in [consTail, prodTail) hold
/// published values. A thread preempted between its claim and its publish delays the publishers behind it
/// (never loses data): the known cost of this design, bounded by a scheduler quantum.
/// </remarks>
internal sealed class PtrRing
{
    private readonly nint[] _slots;
    private readonly uint _mask;
    private Indexes _prod;
    private Indexes _cons;

    /// <summary>Creates a ring holding at least <paramref name="capacity"/> values (rounded up to a power of two).</summary>
    public PtrRing(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, 1 << 30);
        int size = (int)BitOperations.RoundUpToPowerOf2((uint)capacity);
        _slots = new nint[size];
        _mask = (uint)size - 1;
    }

    /// <summary>Number of slots (a power of two).</summary>
    public int Capacity => _slots.Length;

    /// <summary>Values published and not yet claimed by a consumer (a snapshot).</summary>
    public int Count
    {
        get
        {
            // Volatile: a snapshot of two indexes another thread moves; the difference is clamped to [0, Capacity].
            uint prod = Volatile.Read(ref _prod.Tail);
            uint cons = Volatile.Read(ref _cons.Head);
            int n = (int)(prod - cons);
            return n < 0 ? 0 : Math.Min(n, Capacity);
        }
    }

    /// <summary>Whether the ring looked empty (the kernel's <c>__ptr_ring_empty</c>; a hint under concurrency).</summary>
    public bool IsEmpty => Count == 0;

    /// <summary>Enqueues as many of <paramref name="items"/> as fit, in order.</summary>
    /// <returns>How many were enqueued (the first n of <paramref name="items"/>).</returns>
    public int EnqueueBurst(ReadOnlySpan<nint> items)
    {
        if (items.IsEmpty)
            return 0;
        uint head, next, consTail;
        int n;
        while (true)
        {
            // Volatile: the producer head is contended by other producers; the CAS below validates it.
            head = Volatile.Read(ref _prod.Head);
            // Volatile (acquire): consumers publish consTail after reading their slots; slots below it are free to overwrite.
            consTail = Volatile.Read(ref _cons.Tail);
            uint free = (uint)_slots.Length + consTail - head;
            n = (int)Math.Min(free, (uint)items.Length);
            if (n == 0)
                return 0;
            next = head + (uint)n;
            // Interlocked: claims slots [head, next) against other producers; one atomic per batch.
            if (Interlocked.CompareExchange(ref _prod.Head, next, head) == head)
                break;
        }
        // The claim never overtakes the consumers by more than the ring (head was current at the CAS).
        Debug.Assert(next - consTail <= (uint)_slots.Length, "ring producer overran its consumers");

        ref nint slots = ref MemoryMarshal.GetArrayDataReference(_slots);
        for (int i = 0; i < n; i++)
            Unsafe.Add(ref slots, (nint)((head + (uint)i) & _mask)) = items[i];

        WaitForTurn(ref _prod.Tail, head);
        // Volatile (release): publishes the slot writes above to consumers that acquire prodTail.
        Volatile.Write(ref _prod.Tail, next);
        return n;
    }

    /// <summary>Enqueues one value.</summary>
    /// <returns>False when the ring is full.</returns>
    public bool TryEnqueue(nint item) => EnqueueBurst(new ReadOnlySpan<nint>(in item)) == 1;

    /// <summary>Dequeues up to <c>destination.Length</c> values, oldest first.</summary>
    /// <returns>How many were written to the start of <paramref name="destination"/>.</returns>
    public int DequeueBurst(Span<nint> destination)
    {
        if (destination.IsEmpty)
            return 0;
        uint head, next, available;
        int n;
        while (true)
        {
            // Volatile: the consumer head is contended by other consumers; the CAS below validates it.
            head = Volatile.Read(ref _cons.Head);
            // Volatile (acquire): producers publish prodTail after writing their slots.
            uint prodTail = Volatile.Read(ref _prod.Tail);
            available = prodTail - head;
            if ((int)available <= 0)
                return 0;
            n = (int)Math.Min(available, (uint)destination.Length);
            next = head + (uint)n;
            // Interlocked: claims slots [head, next) against other consumers; one atomic per batch.
            if (Interlocked.CompareExchange(ref _cons.Head, next, head) == head)
                break;
        }
        // A consumer never sees more published entries than the ring holds (head was current at the CAS).
        Debug.Assert(available <= (uint)_slots.Length, "ring consumer saw more entries than the ring holds");

        ref nint slots = ref MemoryMarshal.GetArrayDataReference(_slots);
        for (int i = 0; i < n; i++)
            destination[i] = Unsafe.Add(ref slots, (nint)((head + (uint)i) & _mask));

        WaitForTurn(ref _cons.Tail, head);
        // Volatile (release): tells producers the slots above have been read and may be overwritten.
        Volatile.Write(ref _cons.Tail, next);
        return n;
    }

    /// <summary>Dequeues one value.</summary>
    public bool TryDequeue(out nint item)
    {
        item = 0;
        return DequeueBurst(new Span<nint>(ref item)) == 1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WaitForTurn(ref uint tail, uint expected)
    {
        // Volatile: earlier claimers publish in claim order; wait until the tail reaches our claim.
        if (Volatile.Read(ref tail) != expected)
            WaitForTurnSlow(ref tail, expected);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void WaitForTurnSlow(ref uint tail, uint expected)
    {
        var spin = new SpinWait();
        // Volatile: see WaitForTurn. sleep1Threshold -1: yield, never sleep a whole millisecond.
        while (Volatile.Read(ref tail) != expected)
            spin.SpinOnce(sleep1Threshold: -1);
    }

    /// <summary>A head/tail pair alone on its cache lines, so producers and consumers never share a line.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 3 * Padding.CacheLineSize)]
    internal struct Indexes
    {
        [FieldOffset(Padding.CacheLineSize)] public uint Head;
        [FieldOffset(Padding.CacheLineSize + 64)] public uint Tail;
    }
}
