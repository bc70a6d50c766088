using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UnmanagedPool.Native;
using UnmanagedPool.AfXdp.Interop;

namespace UnmanagedPool.AfXdp;

/// <summary>
/// An AF_XDP socket over raw system calls: its UMEM is a <see cref="UmemProvider"/>'s area (registered with
/// <c>XDP_UMEM_REG</c>, or shared with another socket's through <c>XDP_SHARED_UMEM</c>), its fill, completion, RX
/// and TX rings are mmapped, and it is bound to one queue of one interface.
/// </summary>
/// <remarks>
/// <para>
/// The frame-level methods (<see cref="Fill"/>, <see cref="Receive"/>, <see cref="Transmit"/>,
/// <see cref="Complete"/>) move pool pages to and from the kernel and keep track of which chunks the kernel holds,
/// so that after <see cref="Dispose"/> <see cref="ReclaimHeld"/> hands back every chunk the kernel never returned.
/// The rings are also exposed raw (<see cref="FillRing"/>, ...); entries moved through them directly are not tracked.
/// </para>
/// <para>
/// Threading: the fill and RX rings belong to one thread (the receive side), the TX and completion rings to one
/// thread (the transmit side); the two sides may be different threads. Each side tracks its chunks in its own
/// bitmap (fill → RX on the receive side, TX → completion on the transmit side), so the tracking needs no atomics.
/// </para>
/// <para>
/// Lifetime: <see cref="Dispose"/> belongs after the threads that use the socket and its rings have stopped (joined,
/// or told to stop and seen to). After it every call on the socket and on its rings, raw ones included, throws
/// <see cref="ObjectDisposedException"/> (one field read per batch call: <c>Reserve</c>, <c>Peek</c>,
/// <c>Submit</c>, <c>Release</c>, ...), whoever still holds a ring object. A Dispose that races a call in
/// progress is a bug of the caller, but not a crash: the rings' address ranges stay mapped (as private memory of
/// their own, no longer the kernel's) until no ring object is reachable, so the call in progress reads and writes
/// memory that is still there; what it returns for that one batch is unspecified, and the next call throws.
/// </para>
/// <para>
/// The file descriptor, the ring mappings and the socket's hold on the UMEM belong to a <see cref="SafeHandle"/>:
/// a socket that is dropped without <see cref="Dispose"/> is closed by the finalizer (the kernel then unbinds it
/// and removes it from any XSKMAP), so its descriptor and the UMEM are not leaked for the life of the process.
/// Dispose it all the same: until the finalizer runs, its queue stays busy and the kernel keeps its chunks.
/// </para>
/// </remarks>
public sealed unsafe class XdpSocket : IDisposable
{
    private readonly UmemProvider _umem;
    private readonly SocketHandle _handle;
    private readonly RingMemory _memory;  // the rings' address ranges, kept valid while a ring is reachable
    private readonly int _fd;           // _handle's descriptor, read on the hot paths without a SafeHandle reference count
    private readonly ulong[] _heldRx;   // chunks in the fill ring or the kernel's RX path: receive side only
    private readonly ulong[] _heldTx;   // chunks in the TX ring or the kernel's TX path: transmit side only
    private readonly ulong _umemLimit; // bytes of the UMEM that hold chunks: a ring address must be below it
    private int _heldRxCount;
    private int _heldTxCount;
    private int _disposed;

    /// <summary>Creates the socket, registers or shares the UMEM, maps the rings and binds.</summary>
    /// <param name="umem">The UMEM's memory (ignored when <see cref="XdpSocketOptions.SharedUmem"/> is set: that socket's is used).</param>
    /// <param name="options">The interface, queue, ring sizes and mode.</param>
    /// <exception cref="XdpException">A step failed; <see cref="XdpException.Error"/> says why.</exception>
    /// <exception cref="ObjectDisposedException">The UMEM's provider, or the <see cref="XdpSocketOptions.SharedUmem"/> socket, has been disposed.</exception>
    public XdpSocket(UmemProvider? umem, XdpSocketOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _umem = options.SharedUmem?.Umem ?? umem ?? throw new ArgumentNullException(nameof(umem));
        Interface = options.Interface;
        QueueId = options.QueueId;
        ValidateRing(options.FillSize, nameof(options.FillSize), allowZero: false);
        ValidateRing(options.CompletionSize, nameof(options.CompletionSize), allowZero: false);
        ValidateRing(options.RxSize, nameof(options.RxSize), allowZero: true);
        ValidateRing(options.TxSize, nameof(options.TxSize), allowZero: true);
        if (options.RxSize == 0 && options.TxSize == 0)
            throw new ArgumentException("A socket needs an RX ring, a TX ring or both.", nameof(options));

        IfIndex = XdpInterface.IndexOf(options.Interface);
        int queues = XdpInterface.RxQueueCount(options.Interface);
        if ((uint)options.QueueId >= (uint)queues)
            throw new XdpException(XdpError.QueueOutOfRange, 0,
                $"Queue {options.QueueId} is past the {queues} receive queue(s) of {options.Interface} (a veth has one unless its channels are raised).");

        _umemLimit = (ulong)_umem.ChunkCount << PageConstants.PageShift;
        _heldRx = new ulong[(_umem.ChunkCount + 63) >> 6];
        _heldTx = new ulong[(_umem.ChunkCount + 63) >> 6];
        // The socket keeps the area mapped while the kernel may write into it (until its handle is released).
        _umem.AddUser();
        _memory = new RingMemory();
        _handle = new SocketHandle(_umem, _memory);
        _fd = Sys.Socket(Sys.AF_XDP, Sys.SOCK_RAW | Sys.SOCK_CLOEXEC, 0);
        if (_fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _handle.Dispose();
            throw XdpException.FromErrno("socket(AF_XDP)", errno);
        }
        _handle.Adopt(_fd);
        try
        {
            if (options.SharedUmem == null)
                RegisterUmem(options.Headroom);
            SetRingSize(Sys.XDP_UMEM_FILL_RING, options.FillSize, "fill");
            SetRingSize(Sys.XDP_UMEM_COMPLETION_RING, options.CompletionSize, "completion");
            if (options.RxSize > 0)
                SetRingSize(Sys.XDP_RX_RING, options.RxSize, "RX");
            if (options.TxSize > 0)
                SetRingSize(Sys.XDP_TX_RING, options.TxSize, "TX");

            Sys.MmapOffsets off;
            uint len = (uint)sizeof(Sys.MmapOffsets);
            if (Sys.GetSockOpt(_fd, Sys.SOL_XDP, Sys.XDP_MMAP_OFFSETS, &off, &len) != 0)
                throw XdpException.FromErrno("getsockopt(XDP_MMAP_OFFSETS)", Marshal.GetLastPInvokeError());

            byte* fill = Map(0, Sys.XDP_UMEM_PGOFF_FILL_RING, off.Fill, options.FillSize, sizeof(ulong));
            FillRing = new XdpProducerRing<ulong>(fill, off.Fill, (uint)options.FillSize, _memory);
            byte* comp = Map(1, Sys.XDP_UMEM_PGOFF_COMPLETION_RING, off.Completion, options.CompletionSize, sizeof(ulong));
            CompletionRing = new XdpConsumerRing<ulong>(comp, off.Completion, (uint)options.CompletionSize, _memory);
            if (options.RxSize > 0)
                RxRing = new XdpConsumerRing<XdpDesc>(Map(2, Sys.XDP_PGOFF_RX_RING, off.Rx, options.RxSize, sizeof(XdpDesc)), off.Rx, (uint)options.RxSize, _memory);
            if (options.TxSize > 0)
                TxRing = new XdpProducerRing<XdpDesc>(Map(3, Sys.XDP_PGOFF_TX_RING, off.Tx, options.TxSize, sizeof(XdpDesc)), off.Tx, (uint)options.TxSize, _memory);

            Bind(options);
            uint opts = 0;
            len = sizeof(uint);
            IsZeroCopy = Sys.GetSockOpt(_fd, Sys.SOL_XDP, Sys.XDP_OPTIONS, &opts, &len) == 0 && (opts & Sys.XDP_OPTIONS_ZEROCOPY) != 0;
        }
        catch
        {
            _handle.Dispose();
            throw;
        }
    }

    /// <summary>The socket's file descriptor (what the XSKMAP holds); after <see cref="Dispose"/> the number is stale and may name another file.</summary>
    public int Fd => _fd;

    /// <summary>The UMEM's memory.</summary>
    public UmemProvider Umem => _umem;

    /// <summary>The interface the socket is bound to.</summary>
    public string Interface { get; }

    /// <summary>Its index.</summary>
    public int IfIndex { get; }

    /// <summary>The queue the socket is bound to.</summary>
    public int QueueId { get; }

    /// <summary>Whether the kernel bound the socket in zero-copy mode (false: copy mode).</summary>
    public bool IsZeroCopy { get; }

    /// <summary>The fill ring (raw access; entries moved here are not tracked).</summary>
    public XdpProducerRing<ulong> FillRing { get; } = null!;

    /// <summary>The completion ring (raw access).</summary>
    public XdpConsumerRing<ulong> CompletionRing { get; } = null!;

    /// <summary>The RX ring, or null for a transmit-only socket (raw access).</summary>
    public XdpConsumerRing<XdpDesc>? RxRing { get; }

    /// <summary>The TX ring, or null for a receive-only socket (raw access).</summary>
    public XdpProducerRing<XdpDesc>? TxRing { get; }

    /// <summary>Chunks handed to the kernel through <see cref="Fill"/> and <see cref="Transmit"/> and not yet back.</summary>
    public int HeldByKernel => _heldRxCount + _heldTxCount;

    /// <summary>
    /// Hands <paramref name="pages"/> (chunks of this socket's UMEM) to the kernel through the fill ring, as many as
    /// it has room for. Receive side only.
    /// </summary>
    /// <returns>How many were handed over, from the start of the span.</returns>
    /// <exception cref="ArgumentException">A page is not a chunk of this socket's UMEM (nothing of the batch is handed over).</exception>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    public int Fill(ReadOnlySpan<NetMemRef> pages)
    {
        XdpProducerRing<ulong> ring = FillRing;
        uint n = ring.Reserve((uint)pages.Length, out uint index);
        nint area = _umem.Area;
        ulong limit = _umemLimit;
        for (int i = 0; i < (int)n; i++)
        {
            ulong offset = (ulong)((nint)pages[i].Address - area);
            if (offset >= limit)
            {
                // Nothing of the batch reaches the kernel: a reserved slot left unwritten would be published by the next Submit.
                for (int j = 0; j < i; j++)
                    ClearHeld(_heldRx, ref _heldRxCount, ring[index + (uint)j]);
                ring.Cancel(n);
                ThrowNotInUmem(nameof(pages), i);
            }
            ring[index + (uint)i] = offset;
            SetHeld(_heldRx, ref _heldRxCount, offset);
        }
        if (n > 0)
            ring.Submit(n);
        return (int)n;
    }

    /// <summary>
    /// Takes up to <paramref name="frames"/>.Length received frames from the RX ring; each is the UMEM chunk (a
    /// pool page) with the frame at its offset. The chunks are the caller's from now on. Receive side only.
    /// </summary>
    /// <returns>How many frames were taken.</returns>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    public int Receive(Span<UmemFrame> frames)
    {
        XdpConsumerRing<XdpDesc>? ring = RxRing;
        if (ring == null)
            ThrowNoRing("RX");
        uint n = ring.Peek((uint)frames.Length, out uint index);
        for (int i = 0; i < (int)n; i++)
        {
            ref readonly XdpDesc d = ref ring[index + (uint)i];
            NetMemRef page = _umem.FromOffset(d.Addr);
            ClearHeld(_heldRx, ref _heldRxCount, d.Addr);
            frames[i] = new UmemFrame(page, (int)(d.Addr & (UmemProvider.ChunkSize - 1)), (int)d.Len);
        }
        if (n > 0)
            ring.Release(n);
        return (int)n;
    }

    /// <summary>
    /// Queues <paramref name="frames"/> (in chunks of this UMEM) on the TX ring, as many as it has room for, and
    /// wakes the kernel when it asks for it (always in copy mode, where the system call does the sending).
    /// Transmit side only. The chunks come back through <see cref="Complete"/>.
    /// </summary>
    /// <returns>How many were queued, from the start of the span.</returns>
    /// <exception cref="ArgumentException">A frame's page is not a chunk of this socket's UMEM (nothing of the batch is queued).</exception>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    public int Transmit(ReadOnlySpan<UmemFrame> frames)
    {
        XdpProducerRing<XdpDesc>? ring = TxRing;
        if (ring == null)
            ThrowNoRing("TX");
        uint n = ring.Reserve((uint)frames.Length, out uint index);
        nint area = _umem.Area;
        ulong limit = _umemLimit;
        for (int i = 0; i < (int)n; i++)
        {
            ref XdpDesc d = ref ring[index + (uint)i];
            ulong chunk = (ulong)((nint)frames[i].Page.Address - area);
            if (chunk >= limit)
            {
                for (int j = 0; j < i; j++)
                    ClearHeld(_heldTx, ref _heldTxCount, ring[index + (uint)j].Addr);
                ring.Cancel(n);
                ThrowNotInUmem(nameof(frames), i);
            }
            d.Addr = chunk + (ulong)frames[i].Offset;
            d.Len = (uint)frames[i].Length;
            d.Options = 0;
            SetHeld(_heldTx, ref _heldTxCount, chunk);
        }
        if (n > 0)
        {
            ring.Submit(n);
            if (!IsZeroCopy || ring.NeedsWakeup)
                WakeupTx();
        }
        return (int)n;
    }

    /// <summary>
    /// Takes up to <paramref name="pages"/>.Length chunks the kernel has finished sending from the completion ring.
    /// Transmit side only.
    /// </summary>
    /// <returns>How many were taken.</returns>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    public int Complete(Span<NetMemRef> pages)
    {
        XdpConsumerRing<ulong> ring = CompletionRing;
        uint n = ring.Peek((uint)pages.Length, out uint index);
        for (int i = 0; i < (int)n; i++)
        {
            ulong addr = ring[index + (uint)i];
            pages[i] = _umem.FromOffset(addr);
            ClearHeld(_heldTx, ref _heldTxCount, addr);
        }
        if (n > 0)
            ring.Release(n);
        return (int)n;
    }

    /// <summary>Kicks the kernel to send what the TX ring holds (<c>sendto</c> with no data).</summary>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    public void WakeupTx()
    {
        ThrowIfDisposed();
        nint r = Sys.SendTo(_fd, null, 0, Sys.MSG_DONTWAIT, null, 0);
        if (r < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            // EAGAIN/EBUSY/ENOBUFS: the kernel is busy or out of room and will take the ring on the next kick.
            if (errno is not (Sys.EAGAIN or Sys.EBUSY or Sys.ENOBUFS or Sys.ENETDOWN or Sys.EINTR))
                throw XdpException.FromErrno("sendto (TX wakeup)", errno);
        }
    }

    /// <summary>Kicks the kernel to take fill ring entries (zero-copy drivers that set the need-wakeup flag).</summary>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    public void WakeupRx()
    {
        ThrowIfDisposed();
        Sys.RecvFrom(_fd, null, 0, Sys.MSG_DONTWAIT, null, null);
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> for a received frame (<c>poll</c>).</summary>
    /// <returns>True when the RX ring has something to read.</returns>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    public bool WaitReceive(int timeoutMs)
    {
        ThrowIfDisposed();
        var pfd = new Sys.PollFd { Fd = _fd, Events = Sys.POLLIN };
        return Sys.Poll(&pfd, 1, timeoutMs) > 0;
    }

    /// <summary>The kernel's <c>XDP_STATISTICS</c> for this socket.</summary>
    /// <exception cref="ObjectDisposedException">The socket has been disposed.</exception>
    public XdpStatistics GetStatistics()
    {
        ThrowIfDisposed();
        ulong* s = stackalloc ulong[6];
        new Span<ulong>(s, 6).Clear();
        uint len = 6 * sizeof(ulong);
        if (Sys.GetSockOpt(_fd, Sys.SOL_XDP, Sys.XDP_STATISTICS, s, &len) != 0)
            throw XdpException.FromErrno("getsockopt(XDP_STATISTICS)", Marshal.GetLastPInvokeError());
        return new XdpStatistics
        {
            RxDropped = s[0],
            RxInvalidDescs = s[1],
            TxInvalidDescs = s[2],
            RxRingFull = s[3],
            RxFillRingEmptyDescs = s[4],
            TxRingEmptyDescs = s[5],
        };
    }

    /// <summary>
    /// After <see cref="Dispose"/>: writes the chunks the kernel still held when the socket closed (in the fill
    /// ring, in flight on RX or TX) into <paramref name="pages"/> and forgets them; they are the caller's again.
    /// </summary>
    /// <returns>How many were written; call again while it returns a full span.</returns>
    /// <exception cref="InvalidOperationException">The socket is still open: the kernel may still write the chunks.</exception>
    public int ReclaimHeld(Span<NetMemRef> pages)
    {
        // Volatile: Dispose may have run on another thread.
        if (Volatile.Read(ref _disposed) == 0)
            throw new InvalidOperationException("The socket is open: the kernel may still use the chunks it holds.");
        int n = Reclaim(_heldRx, ref _heldRxCount, pages);
        return n + Reclaim(_heldTx, ref _heldTxCount, pages[n..]);
    }

    /// <summary>
    /// Closes the socket and takes its rings from the kernel: every later call on the socket (but
    /// <see cref="ReclaimHeld"/>) or on one of its rings throws <see cref="ObjectDisposedException"/>. The UMEM stays
    /// mapped while its provider or a pool holds it. Must not run while another thread is in a call on the socket
    /// or its rings (see the remarks on <see cref="XdpSocket"/>).
    /// </summary>
    public void Dispose()
    {
        // Interlocked: one closer only (an exit path and a finally may both dispose).
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        // The rings refuse every call from now on, before their memory stops being the kernel's.
        _memory.MarkClosed();
        _handle.Disposing = true;
        _handle.Dispose();
    }

    /// <summary>Whether <paramref name="socket"/>'s descriptor has been closed (by <see cref="Dispose"/> or by the finalizer).</summary>
    internal static bool IsClosed(XdpSocket socket) => socket._handle.IsClosed;

    /// <summary>The handle that owns the descriptor: a caller that passes <see cref="Fd"/> to the kernel holds a reference on it for the call.</summary>
    internal SafeHandle Handle => _handle;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ThrowIfDisposed()
    {
        // Volatile: Dispose may have run on another thread before this call (see the threading rule).
        if (Volatile.Read(ref _disposed) != 0)
            ThrowDisposed();
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowDisposed() => throw new ObjectDisposedException(nameof(XdpSocket));

    private int Reclaim(ulong[] held, ref int count, Span<NetMemRef> pages)
    {
        int n = 0;
        for (int w = 0; w < held.Length && n < pages.Length; w++)
        {
            while (held[w] != 0 && n < pages.Length)
            {
                int bit = BitOperations.TrailingZeroCount(held[w]);
                held[w] &= held[w] - 1;
                count--;
                pages[n++] = _umem.FromOffset((((ulong)w << 6) + (ulong)(uint)bit) << PageConstants.PageShift);
            }
        }
        return n;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SetHeld(ulong[] held, ref int count, ulong offset)
    {
        ulong chunk = offset >> PageConstants.PageShift;
        ref ulong word = ref held[(int)(chunk >> 6)];
        ulong bit = 1UL << (int)(chunk & 63);
        if ((word & bit) == 0)
            count++;
        word |= bit;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ClearHeld(ulong[] held, ref int count, ulong offset)
    {
        ulong chunk = offset >> PageConstants.PageShift;
        if (chunk >= (ulong)held.Length << 6)
            return;
        ref ulong word = ref held[(int)(chunk >> 6)];
        ulong bit = 1UL << (int)(chunk & 63);
        if ((word & bit) != 0)
            count--;
        word &= ~bit;
    }

    private void RegisterUmem(int headroom)
    {
        var reg = new Sys.UmemReg
        {
            Addr = (ulong)_umem.Area,
            Len = (ulong)_umem.AreaSize,
            ChunkSize = UmemProvider.ChunkSize,
            Headroom = (uint)headroom,
        };
        if (Sys.SetSockOpt(_fd, Sys.SOL_XDP, Sys.XDP_UMEM_REG, &reg, (uint)sizeof(Sys.UmemReg)) != 0)
            throw XdpException.FromErrno($"setsockopt(XDP_UMEM_REG, {_umem.AreaSize >> 10} KiB)", Marshal.GetLastPInvokeError());
    }

    private void SetRingSize(int option, int size, string name)
    {
        int value = size;
        if (Sys.SetSockOpt(_fd, Sys.SOL_XDP, option, &value, sizeof(int)) != 0)
            throw XdpException.FromErrno($"setsockopt({name} ring, {size} entries)", Marshal.GetLastPInvokeError());
    }

    private byte* Map(int slot, long pgoff, in Sys.RingOffset off, int entries, int entrySize)
    {
        nuint length = (nuint)(off.Desc + (ulong)entries * (ulong)entrySize);
        nint address = Sys.MMap(0, length, Sys.PROT_READ | Sys.PROT_WRITE, Sys.MAP_SHARED | Sys.MAP_POPULATE, _fd, pgoff);
        if (address == Sys.MAP_FAILED)
            throw XdpException.FromErrno($"mmap of ring at 0x{pgoff:x}", Marshal.GetLastPInvokeError());
        _memory.Maps[slot] = (address, length);
        return (byte*)address;
    }

    private void Bind(XdpSocketOptions options)
    {
        ushort flags = options.Mode switch
        {
            XdpBindMode.Copy => Sys.XDP_COPY,
            XdpBindMode.ZeroCopy => Sys.XDP_ZEROCOPY,
            _ => 0,
        };
        if (options.NeedWakeup)
            flags |= Sys.XDP_USE_NEED_WAKEUP;
        var sa = new Sys.SockaddrXdp { Family = Sys.AF_XDP, IfIndex = (uint)IfIndex, QueueId = (uint)options.QueueId };
        if (options.SharedUmem is { } owner)
        {
            // A socket sharing a UMEM takes its mode and need-wakeup setting from the UMEM's owner: the kernel
            // refuses any other flag beside XDP_SHARED_UMEM.
            sa.Flags = Sys.XDP_SHARED_UMEM;
            sa.SharedUmemFd = (uint)owner.Fd;
        }
        else
        {
            sa.Flags = flags;
        }
        // The owner's descriptor stays open through the bind even if another thread disposes the owner meanwhile.
        bool ownerRef = false;
        int result;
        int errno;
        try
        {
            if (options.SharedUmem is { } o)
            {
                try
                {
                    o._handle.DangerousAddRef(ref ownerRef);
                }
                catch (ObjectDisposedException)
                {
                    throw new ObjectDisposedException(nameof(XdpSocket), "The socket whose UMEM this one would share (SharedUmem) has been disposed.");
                }
            }
            result = Sys.Bind(_fd, &sa, (uint)sizeof(Sys.SockaddrXdp));
            errno = Marshal.GetLastPInvokeError();
        }
        finally
        {
            if (ownerRef)
                options.SharedUmem!._handle.DangerousRelease();
        }
        if (result == 0)
            return;
        string what = $"bind AF_XDP socket to {options.Interface} queue {options.QueueId} ({options.Mode} mode)";
        XdpError? kind = errno switch
        {
            Sys.EOPNOTSUPP when options.Mode == XdpBindMode.ZeroCopy => XdpError.NotSupported,
            Sys.EBUSY => XdpError.Busy,
            Sys.EINVAL when options.QueueId > 0 => XdpError.QueueOutOfRange,
            _ => null,
        };
        throw XdpException.FromErrno(what, errno, kind);
    }

    /// <summary>
    /// Owns the socket's descriptor, its ring mappings and its hold on the UMEM (<see cref="UmemProvider.AddUser"/>),
    /// and gives them all back once: on <see cref="Dispose"/>, on a failed construction, or in the finalizer of a
    /// socket that was never disposed.
    /// </summary>
    private sealed class SocketHandle : SafeHandle
    {
        private readonly UmemProvider _umem;
        private readonly RingMemory _memory;

        public SocketHandle(UmemProvider umem, RingMemory memory)
            : base(invalidHandleValue: -1, ownsHandle: true)
        {
            _umem = umem;
            _memory = memory;
            memory.Owner = this;
        }

        /// <summary>Set by <see cref="XdpSocket.Dispose"/>: the rings may still be reachable, so their ranges get placeholders.</summary>
        public bool Disposing { get; set; }

        public override bool IsInvalid => false;

        public void Adopt(int fd) => SetHandle(fd);

        protected override bool ReleaseHandle()
        {
            // On Dispose a ring object may outlive the socket: its range gets anonymous memory that RingMemory frees
            // once no ring can reach it. On a failed construction or in the finalizer no ring is reachable (a ring
            // keeps this handle alive): the ranges go now.
            if (Disposing)
                _memory.ReplaceWithPlaceholders();
            else
                _memory.Unmap();
            int fd = (int)handle;
            if (fd >= 0)
                Sys.Close(fd);
            // Only after the close: the kernel no longer writes into the area, which may now go.
            _umem.RemoveUser();
            return true;
        }
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNotInUmem(string name, int at) =>
        throw new ArgumentException($"Entry {at} is not a chunk of this socket's UMEM; nothing of the batch was handed to the kernel.", name);

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNoRing(string which) => throw new InvalidOperationException($"The socket has no {which} ring.");

    private static void ValidateRing(int size, string name, bool allowZero)
    {
        if (size == 0 && allowZero)
            return;
        if (size <= 0 || !BitOperations.IsPow2(size))
            throw new ArgumentOutOfRangeException(name, size, "A ring size is a power of two.");
    }
}
