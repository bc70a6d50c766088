using System.Runtime.CompilerServices;

namespace UnmanagedPool.AfXdp;

/// <summary>
/// The user side of an AF_XDP ring the application produces into (the fill and TX rings): a single-producer
/// ring shared with the kernel, whose indexes run freely and are masked on access (<c>net/xdp/xsk_queue.h</c>).
/// One thread at a time: the ring has one producer.
/// </summary>
/// <remarks>
/// After the socket's <see cref="XdpSocket.Dispose"/> every member but the indexer throws
/// <see cref="ObjectDisposedException"/> (one field read per batch call); see <see cref="XdpSocket"/> for the rule
/// on disposing while a ring is in use.
/// </remarks>
/// <typeparam name="T"><see cref="ulong"/> (a UMEM address) for the fill ring, <see cref="XdpDesc"/> for TX.</typeparam>
public sealed unsafe class XdpProducerRing<T> where T : unmanaged
{
    private readonly uint* _producer;
    private readonly uint* _consumer;
    private readonly uint* _flags;
    private readonly T* _ring;
    private readonly uint _mask;
    private readonly RingMemory _memory; // keeps the ring's address range mapped while this object is reachable
    private uint _cachedProd;  // producer thread only: the next entry to write
    private uint _cachedCons;  // producer thread only: the consumer index seen last, plus Size

    internal XdpProducerRing(byte* map, in Interop.Sys.RingOffset off, uint size, RingMemory memory)
    {
        _memory = memory;
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

    /// <summary>Whether the socket has been disposed (every call but the indexer then throws).</summary>
    public bool IsClosed => _memory.IsClosed;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ThrowIfClosed() => _memory.ThrowIfClosed(this);

    /// <summary>Whether the kernel asks to be woken (<c>XDP_RING_NEED_WAKEUP</c>, with <c>XDP_USE_NEED_WAKEUP</c>).</summary>
    public bool NeedsWakeup
    {
        // Volatile: the kernel sets and clears the flag from its own context at any time.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            ThrowIfClosed();
            return (Volatile.Read(ref *_flags) & Interop.Sys.XDP_RING_NEED_WAKEUP) != 0;
        }
    }

    /// <summary>Entries free for the producer now (refreshes the consumer index when the cached view is short).</summary>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    public uint Free(uint wanted)
    {
        ThrowIfClosed();
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
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
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
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Submit(uint count)
    {
        ThrowIfClosed();
        // Volatile (release): the entries written above must be visible before the kernel sees the new producer
        // index (xskq "A": the kernel reads the producer with acquire, then the entries).
        Volatile.Write(ref *_producer, *_producer + count); // the producer index is ours alone: a plain read
    }

    /// <summary>Gives back the <paramref name="count"/> newest reserved entries, unwritten and never submitted.</summary>
    internal void Cancel(uint count) => _cachedProd -= count;

    /// <summary>Entries submitted and not yet consumed by the kernel.</summary>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    public uint Outstanding
    {
        get
        {
            ThrowIfClosed();
            // Volatile: both indexes move under us (the consumer by the kernel).
            return Volatile.Read(ref *_producer) - Volatile.Read(ref *_consumer);
        }
    }
}

/// <summary>
/// The user side of an AF_XDP ring the kernel produces into (the RX and completion rings). One thread at a time:
/// the ring has one consumer.
/// </summary>
/// <remarks>
/// After the socket's <see cref="XdpSocket.Dispose"/> every member but the indexer throws
/// <see cref="ObjectDisposedException"/> (one field read per batch call); see <see cref="XdpSocket"/> for the rule
/// on disposing while a ring is in use.
/// </remarks>
/// <typeparam name="T"><see cref="XdpDesc"/> for RX, <see cref="ulong"/> (a UMEM address) for the completion ring.</typeparam>
public sealed unsafe class XdpConsumerRing<T> where T : unmanaged
{
    private readonly uint* _producer;
    private readonly uint* _consumer;
    private readonly uint* _flags;
    private readonly T* _ring;
    private readonly uint _mask;
    private readonly RingMemory _memory; // keeps the ring's address range mapped while this object is reachable
    private uint _cachedProd;  // consumer thread only: the producer index seen last
    private uint _cachedCons;  // consumer thread only: the next entry to read

    internal XdpConsumerRing(byte* map, in Interop.Sys.RingOffset off, uint size, RingMemory memory)
    {
        _memory = memory;
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

    /// <summary>Whether the socket has been disposed (every call but the indexer then throws).</summary>
    public bool IsClosed => _memory.IsClosed;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ThrowIfClosed() => _memory.ThrowIfClosed(this);

    /// <summary>Whether the kernel asks to be woken (<c>XDP_RING_NEED_WAKEUP</c>).</summary>
    public bool NeedsWakeup
    {
        // Volatile: the kernel changes the flag at any time.
        get
        {
            ThrowIfClosed();
            return (Volatile.Read(ref *_flags) & Interop.Sys.XDP_RING_NEED_WAKEUP) != 0;
        }
    }

    /// <summary>
    /// Finds up to <paramref name="count"/> entries ready to read; <paramref name="index"/> is the first one's index.
    /// They stay the application's until <see cref="Release"/>.
    /// </summary>
    /// <returns>How many are ready (0 when the ring is empty).</returns>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Peek(uint count, out uint index)
    {
        ThrowIfClosed();
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
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release(uint count)
    {
        ThrowIfClosed();
        // Volatile (release): every read of the entries above completes before the kernel may overwrite them
        // (xskq "B": the kernel reads the consumer with acquire before writing).
        Volatile.Write(ref *_consumer, *_consumer + count); // the consumer index is ours alone: a plain read
    }
}

/// <summary>
/// The address ranges of one socket's four rings. While the socket is open they are the kernel's ring mappings.
/// Its <see cref="XdpSocket.Dispose"/> swaps each for private anonymous memory of the same size at the same
/// address (<c>mmap MAP_FIXED</c>: the socket's mapping, and with it the kernel's hold on the socket, goes at once),
/// and this object's finalizer unmaps those only when no ring (and no socket) can reach them any more: a ring used
/// after, or during, the socket's disposal touches memory of its own, never unmapped or reused addresses.
/// </summary>
internal sealed unsafe class RingMemory
{
    private int _placeholders; // 1 once Dispose swapped the mappings
    private bool _closed;      // set once, by the socket's Dispose: every ring of the socket refuses calls from then on

    /// <summary>Whether the socket's Dispose has begun.</summary>
    // Volatile: written once by Dispose, on whichever thread ran it.
    public bool IsClosed => Volatile.Read(ref _closed);

    /// <summary>Called by the socket's Dispose before the rings' memory stops being the kernel's.</summary>
    public void MarkClosed() => Volatile.Write(ref _closed, true); // Volatile: pairs with ThrowIfClosed on the rings' thread

    /// <summary>Throws <see cref="ObjectDisposedException"/> naming <paramref name="ring"/> once the socket is disposed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ThrowIfClosed(object ring)
    {
        // Volatile: the one load per batch call that a Dispose run before it (on any thread) is seen by.
        if (Volatile.Read(ref _closed))
            ThrowClosed(ring);
    }

    /// <summary>The fill, completion, RX and TX ring ranges (slots 0..3), set as each is mapped.</summary>
    public (nint Address, nuint Length)[] Maps { get; } = new (nint, nuint)[4];

    /// <summary>The socket's handle: a reachable ring keeps the socket's descriptor and mappings from its finalizer.</summary>
    public object? Owner { get; set; }

    /// <summary>Swaps every mapping for anonymous memory (unmapping the one that cannot be swapped).</summary>
    public void ReplaceWithPlaceholders()
    {
        for (int i = 0; i < Maps.Length; i++)
        {
            (nint address, nuint length) = Maps[i];
            if (address == 0)
                continue;
            nint got = Interop.Sys.MMap(address, length, Interop.Sys.PROT_READ | Interop.Sys.PROT_WRITE,
                Interop.Sys.MAP_PRIVATE | Interop.Sys.MAP_ANONYMOUS | Interop.Sys.MAP_FIXED | Interop.Sys.MAP_NORESERVE, -1, 0);
            if (got != address)
            {
                Interop.Sys.MUnmap(address, length);
                Maps[i] = default;
            }
        }
        // Volatile: the finalizer thread reads it.
        Volatile.Write(ref _placeholders, 1);
    }

    /// <summary>Unmaps every range (the kernel's mappings on the finalizer path, the placeholders later).</summary>
    public void Unmap()
    {
        for (int i = 0; i < Maps.Length; i++)
        {
            if (Maps[i].Address != 0)
                Interop.Sys.MUnmap(Maps[i].Address, Maps[i].Length);
            Maps[i] = default;
        }
    }

    ~RingMemory()
    {
        // Volatile: set by Dispose on another thread. Without placeholders, the socket's handle unmaps (or has).
        if (Volatile.Read(ref _placeholders) != 0)
            Unmap();
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowClosed(object ring) =>
        throw new ObjectDisposedException(ring.GetType().Name, "The AF_XDP socket that owns this ring has been disposed.");
}
