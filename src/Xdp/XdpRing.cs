using System.Runtime.CompilerServices;

namespace UnmanagedPool.AfXdp;

/// <summary>
/// The user side of an AF_XDP ring the application produces into (the fill and TX rings): a single-producer
/// ring shared with the kernel, whose indexes run freely and are masked on access (<c>net/xdp/xsk_queue.h</c>).
/// One thread at a time: the ring has one producer.
/// </summary>
/// <typeparam name="T"><see cref="ulong"/> (a UMEM address) for the fill ring, <see cref="XdpDesc"/> for TX.</typeparam>
public sealed unsafe class XdpProducerRing<T> where T : unmanaged
{
    private readonly uint* _producer;
    private readonly uint* _consumer;
    private readonly uint* _flags;
    private readonly T* _ring;
    private readonly uint _mask;
    private uint _cachedProd;  // producer thread only: the next entry to write
    private uint _cachedCons;  // producer thread only: the consumer index seen last, plus Size

    internal XdpProducerRing(byte* map, in Interop.Sys.RingOffset off, uint size)
    {
        _producer = (uint*)(map + off.Producer);
        _consumer = (uint*)(map + off.Consumer);
        _flags = (uint*)(map + off.Flags);
        _ring = (T*)(map + off.Desc);
        Size = size;
        _mask = size - 1;
        // Volatile: the kernel initialised the indexes before the mmap returned; read them once as a start.
        _cachedProd = Volatile.Read(ref *_producer);
        _cachedCons = Volatile.Read(ref *_consumer) + size;
    }

    /// <summary>Entries in the ring (a power of two).</summary>
    public uint Size { get; }

    /// <summary>Whether the kernel asks to be woken (<c>XDP_RING_NEED_WAKEUP</c>, with <c>XDP_USE_NEED_WAKEUP</c>).</summary>
    public bool NeedsWakeup
    {
        // Volatile: the kernel sets and clears the flag from its own context at any time.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (Volatile.Read(ref *_flags) & Interop.Sys.XDP_RING_NEED_WAKEUP) != 0;
    }

    /// <summary>Entries free for the producer now (refreshes the consumer index when the cached view is short).</summary>
    public uint Free(uint wanted)
    {
        uint free = _cachedCons - _cachedProd;
        if (free >= wanted)
            return free;
        // Volatile (acquire): the kernel's consumer release of the entries it read (xskq "B" pairs with this
        // read): once seen, those slots may be overwritten.
        _cachedCons = Volatile.Read(ref *_consumer) + Size;
        return _cachedCons - _cachedProd;
    }

    /// <summary>
    /// Reserves up to <paramref name="count"/> entries; <paramref name="index"/> is the first one's index for
    /// <see cref="this[uint]"/>. Reserved entries must be written and then <see cref="Submit"/>ted.
    /// </summary>
    /// <returns>How many were reserved (0 when the ring is full).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Reserve(uint count, out uint index)
    {
        uint free = Free(count);
        if (count > free)
            count = free;
        index = _cachedProd;
        _cachedProd += count;
        return count;
    }

    /// <summary>The entry at free-running index <paramref name="index"/>.</summary>
    public ref T this[uint index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref _ring[index & _mask];
    }

    /// <summary>Publishes the <paramref name="count"/> oldest reserved entries to the kernel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Submit(uint count)
    {
        // Volatile (release): the entries written above must be visible before the kernel sees the new producer
        // index (xskq "A": the kernel reads the producer with acquire, then the entries).
        Volatile.Write(ref *_producer, *_producer + count); // the producer index is ours alone: a plain read
    }

    /// <summary>Entries submitted and not yet consumed by the kernel.</summary>
    // Volatile: both indexes move under us (the consumer by the kernel).
    public uint Outstanding => Volatile.Read(ref *_producer) - Volatile.Read(ref *_consumer);
}

/// <summary>
/// The user side of an AF_XDP ring the kernel produces into (the RX and completion rings). One thread at a time:
/// the ring has one consumer.
/// </summary>
/// <typeparam name="T"><see cref="XdpDesc"/> for RX, <see cref="ulong"/> (a UMEM address) for the completion ring.</typeparam>
public sealed unsafe class XdpConsumerRing<T> where T : unmanaged
{
    private readonly uint* _producer;
    private readonly uint* _consumer;
    private readonly uint* _flags;
    private readonly T* _ring;
    private readonly uint _mask;
    private uint _cachedProd;  // consumer thread only: the producer index seen last
    private uint _cachedCons;  // consumer thread only: the next entry to read

    internal XdpConsumerRing(byte* map, in Interop.Sys.RingOffset off, uint size)
    {
        _producer = (uint*)(map + off.Producer);
        _consumer = (uint*)(map + off.Consumer);
        _flags = (uint*)(map + off.Flags);
        _ring = (T*)(map + off.Desc);
        Size = size;
        _mask = size - 1;
        // Volatile: read the kernel's initial indexes once as a start.
        _cachedCons = Volatile.Read(ref *_consumer);
        _cachedProd = Volatile.Read(ref *_producer);
    }

    /// <summary>Entries in the ring (a power of two).</summary>
    public uint Size { get; }

    /// <summary>Whether the kernel asks to be woken (<c>XDP_RING_NEED_WAKEUP</c>).</summary>
    public bool NeedsWakeup
    {
        // Volatile: the kernel changes the flag at any time.
        get => (Volatile.Read(ref *_flags) & Interop.Sys.XDP_RING_NEED_WAKEUP) != 0;
    }

    /// <summary>
    /// Finds up to <paramref name="count"/> entries ready to read; <paramref name="index"/> is the first one's index.
    /// They stay the application's until <see cref="Release"/>.
    /// </summary>
    /// <returns>How many are ready (0 when the ring is empty).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Peek(uint count, out uint index)
    {
        uint ready = _cachedProd - _cachedCons;
        if (ready == 0)
        {
            // Volatile (acquire): pairs with the kernel's release of the producer index (xskq "C" → "D"):
            // the entries up to it are written.
            _cachedProd = Volatile.Read(ref *_producer);
            ready = _cachedProd - _cachedCons;
        }
        if (count > ready)
            count = ready;
        index = _cachedCons;
        _cachedCons += count;
        return count;
    }

    /// <summary>The entry at free-running index <paramref name="index"/>.</summary>
    public ref readonly T this[uint index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref _ring[index & _mask];
    }

    /// <summary>Hands the <paramref name="count"/> oldest peeked entries back to the kernel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release(uint count)
    {
        // Volatile (release): every read of the entries above completes before the kernel may overwrite them
        // (xskq "B": the kernel reads the consumer with acquire before writing).
        Volatile.Write(ref *_consumer, *_consumer + count); // the consumer index is ours alone: a plain read
    }
}
