using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UnmanagedPool.Native;

namespace PacketProcessor.Engine;

/// <summary>
/// A bounded single-producer single-consumer ring between two threads. The producer writes items with
/// <see cref="TryWrite"/> and makes them visible in one step with <see cref="Publish"/>; the consumer reads with
/// <see cref="TryRead"/> and hands the slots back with <see cref="Release"/>. So one volatile store per batch.
/// </summary>
internal sealed class SpscRing<T>
{
    private readonly T[] _items;
    private readonly int _mask;

    // Producer side: Shared = tail (published: items [head, tail) readable, read by the consumer), Local = items
    // written and not yet published, Cached = the producer's last look at the head.
    private RingSide _p;

    // Consumer side: Shared = head (released: slots before it are free), Local = items read and not yet released,
    // Cached = the consumer's last look at the tail.
    private RingSide _c;

    public SpscRing(int capacity)
    {
        if (capacity < 2 || (capacity & (capacity - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "Capacity is a power of two, at least 2.");
        _items = new T[capacity];
        _mask = capacity - 1;
    }

    public int Capacity => _items.Length;

    /// <summary>Items published and not yet released (approximate from a third thread).</summary>
    public long Count => Volatile.Read(ref _p.Shared) - Volatile.Read(ref _c.Shared);

    /// <summary>Producer only: writes one item (invisible until <see cref="Publish"/>); false when the ring is full.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryWrite(in T item)
    {
        long p = _p.Local;
        if (p - _p.Cached >= _items.Length)
        {
            // Volatile: the consumer releases slots with a volatile store; acquire it before reusing them.
            _p.Cached = Volatile.Read(ref _c.Shared);
            if (p - _p.Cached >= _items.Length)
                return false;
        }
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_items), (int)p & _mask) = item;
        _p.Local = p + 1;
        return true;
    }

    /// <summary>Producer only: whether <paramref name="count"/> more items fit (looks at the consumer's progress only when needed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool HasRoom(int count)
    {
        if (_p.Local + count - _p.Cached <= _items.Length)
            return true;
        // Volatile: acquire the consumer's released slots (as in TryWrite).
        _p.Cached = Volatile.Read(ref _c.Shared);
        return _p.Local + count - _p.Cached <= _items.Length;
    }

    /// <summary>Producer only: makes every written item visible to the consumer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Publish()
    {
        if (_p.Local != _p.Shared)
            // Volatile: release; the items' stores happen before the consumer sees the new tail.
            Volatile.Write(ref _p.Shared, _p.Local);
    }

    /// <summary>Consumer only: reads the next published item; false when none is published.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryRead(out T item)
    {
        long c = _c.Local;
        if (c == _c.Cached)
        {
            // Volatile: acquire the producer's published items.
            _c.Cached = Volatile.Read(ref _p.Shared);
            if (c == _c.Cached)
            {
                item = default!;
                return false;
            }
        }
        ref T slot = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_items), (int)c & _mask);
        item = slot;
        if (RuntimeHelpers.IsReferenceOrContainsReferences<T>())
            slot = default!;
        _c.Local = c + 1;
        return true;
    }

    /// <summary>Consumer only: hands the slots of every item read back to the producer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release()
    {
        if (_c.Local != _c.Shared)
            // Volatile: release; our reads of the slots happen before the producer may overwrite them.
            Volatile.Write(ref _c.Shared, _c.Local);
    }
}

// The shared index alone on its cache line, the side's private words on the next: the other thread reads
// the shared line only.
[StructLayout(LayoutKind.Explicit, Size = 3 * Padding.CacheLineSize)]
internal struct RingSide
{
    [FieldOffset(Padding.CacheLineSize)] public long Shared;
    [FieldOffset(2 * Padding.CacheLineSize)] public long Local;
    [FieldOffset(2 * Padding.CacheLineSize + 8)] public long Cached;
}
