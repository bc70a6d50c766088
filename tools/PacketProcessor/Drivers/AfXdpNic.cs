using PacketProcessor.Engine;
using UnmanagedPool;
using UnmanagedPool.AfXdp;
using UnmanagedPool.Native;

namespace PacketProcessor.Drivers;

/// <summary>
/// One queue on a real interface through AF_XDP: a socket bound to the queue, its UMEM the
/// <see cref="UmemProvider"/> every queue's pool draws from. The kernel writes each frame into a chunk the queue
/// handed it through the fill ring; <see cref="Receive"/> swaps it in for a posted buffer (which goes to the fill
/// ring in its place), so frames reach the program in pool pages with no copy in user space. Transmit queues
/// chunks on the TX ring with an extra pool reference, dropped when the completion ring gives them back.
/// </summary>
internal sealed unsafe class AfXdpNic : NicQueue
{
    private const int Batch = QueueBase.RefillBatch;
    private const int PollTimeoutMs = 10;

    private readonly XdpSocket _socket;
    private readonly UmemFrame[] _rx = new UmemFrame[Batch];
    private readonly UmemFrame[] _tx = new UmemFrame[Batch];
    private readonly NetMemRef[] _fill = new NetMemRef[Batch];
    private readonly NetMemRef[] _done = new NetMemRef[Batch];
    private readonly int _fillSize;
    private PagePool? _pool;
    private XdpStatistics _final;
    private bool _closed;

    private AfXdpNic(XdpSocket socket, int fillSize)
    {
        _socket = socket;
        _fillSize = fillSize;
    }

    /// <summary>The socket (the processor registers it in the XSKMAP).</summary>
    public XdpSocket Socket => _socket;

    /// <summary>Whether the kernel bound the socket in zero-copy mode.</summary>
    public bool IsZeroCopy => _socket.IsZeroCopy;

    /// <summary>Opens queue <paramref name="queue"/>'s socket; the first queue's registers <paramref name="umem"/>, the others share it.</summary>
    /// <exception cref="DriverException">The socket could not be opened or bound (the message and exit code say why).</exception>
    public static AfXdpNic Open(string interfaceName, int queue, UmemProvider umem, AfXdpNic? first, AfXdpMode mode, int ringSize)
    {
        try
        {
            var socket = new XdpSocket(umem, new XdpSocketOptions
            {
                Interface = interfaceName,
                QueueId = queue,
                SharedUmem = first?._socket,
                Mode = BindMode(mode),
                FillSize = ringSize,
                RxSize = ringSize,
                TxSize = ringSize,
                CompletionSize = ringSize,
            });
            return new AfXdpNic(socket, ringSize);
        }
        catch (XdpException e)
        {
            throw Translate(e);
        }
    }

    /// <summary>The driver's error as one line and the documented exit code.</summary>
    public static DriverException Translate(XdpException e) => new(e.Error switch
    {
        XdpError.NoSuchInterface => DriverException.NoInterface,
        XdpError.PermissionDenied => DriverException.NoPrivileges,
        XdpError.NotSupported => DriverException.NoXdp,
        XdpError.QueueOutOfRange => DriverException.NoSuchQueue,
        XdpError.Busy => DriverException.Busy,
        _ => DriverException.SystemError,
    }, e.Message);

    /// <summary>
    /// Attaches the redirect program to <paramref name="interfaceName"/> and registers each queue's socket in its
    /// XSKMAP; disposing the result detaches it.
    /// </summary>
    /// <exception cref="DriverException">The program could not be loaded or attached (busy, no XDP, no privileges).</exception>
    public static IDisposable AttachProgram(string interfaceName, AfXdpMode mode, IReadOnlyList<AfXdpNic> queues)
    {
        XdpProgram? program = null;
        try
        {
            program = new XdpProgram(interfaceName, mode == AfXdpMode.Generic ? XdpAttachMode.Generic : XdpAttachMode.Auto, Math.Max(64, queues.Count));
            for (int i = 0; i < queues.Count; i++)
                program.Register(queues[i]._socket.QueueId, queues[i]._socket);
            return program;
        }
        catch (XdpException e)
        {
            program?.Dispose();
            throw Translate(e);
        }
    }

    /// <summary>The socket bind mode for a processor mode.</summary>
    public static XdpBindMode BindMode(AfXdpMode mode) => mode switch
    {
        AfXdpMode.Copy or AfXdpMode.Generic => XdpBindMode.Copy,
        AfXdpMode.ZeroCopy => XdpBindMode.ZeroCopy,
        _ => XdpBindMode.Auto,
    };

    public override IMemoryProvider? MemoryProvider => _socket.Umem;

    public override bool WaitsWhenIdle => true;

    /// <summary>Frames the kernel dropped before the program saw them (the socket's XDP statistics).</summary>
    public override long KernelDrops => (long)Statistics.RxLost;

    /// <summary>The socket's XDP statistics (their last values once the socket is closed).</summary>
    public XdpStatistics Statistics => _closed ? _final : _socket.GetStatistics();

    /// <summary>On the queue's thread once its pool exists: hands the kernel a fill ring's worth of its pages.</summary>
    public override void AttachPool(PagePool pool)
    {
        _pool = pool;
        int left = _fillSize;
        while (left > 0)
        {
            int got = pool.AllocPages(_fill.AsSpan(0, Math.Min(left, _fill.Length)));
            if (got == 0)
                break;
            int filled = _socket.Fill(_fill.AsSpan(0, got));
            for (int i = filled; i < got; i++)
                pool.RecycleDirect(_fill[i]);
            left -= filled;
            if (filled < got)
                break;
        }
    }

    public override int Receive(Span<RxBuf> posted, int capacity)
    {
        ReapCompletions();
        int n = _socket.Receive(_rx.AsSpan(0, Math.Min(posted.Length, _rx.Length)));
        if (n == 0)
            return 0;
        // Each received chunk takes a posted buffer's place; the posted page goes to the fill ring instead.
        for (int i = 0; i < n; i++)
        {
            ref RxBuf b = ref posted[i];
            _fill[i] = new NetMemRef(b.Page);
            UmemFrame f = _rx[i];
            b.Ptr = f.Page.Address;
            b.Page = f.Page.Descriptor;
            // The kernel writes at XDP_PACKET_HEADROOM in each chunk, where RxBuf.Frame reads; anything else is
            // a frame this driver cannot hand on as is.
            b.Len = f.Offset == RxBuf.Headroom && f.Length <= capacity ? f.Length : -1;
        }
        int filled = _socket.Fill(_fill.AsSpan(0, n));
        // The fill ring holds what was taken from it, so there is always room; a shortfall returns to the pool.
        for (int i = filled; i < n; i++)
            _pool!.RecycleDirect(_fill[i]);
        return n;
    }

    public override int Transmit(ReadOnlySpan<RxBuf> frames)
    {
        ReapCompletions();
        int n = Math.Min(frames.Length, _tx.Length);
        for (int i = 0; i < n; i++)
        {
            RxBuf b = frames[i];
            NetMemRef page = b.Page != null ? new NetMemRef(b.Page) : NetMemRef.FromAddress(b.Ptr);
            _tx[i] = new UmemFrame(page, RxBuf.Headroom, b.Len);
        }
        int sent = _socket.Transmit(_tx.AsSpan(0, n));
        // The caller recycles every frame when this returns: those on the TX ring keep an extra pool reference
        // until the completion ring gives them back.
        for (int i = 0; i < sent; i++)
            PagePool.FromPage(_tx[i].Page)!.RefPage(_tx[i].Page);
        return sent;
    }

    public override void WaitForTraffic(int timeoutMs)
    {
        ReapCompletions();
        _socket.WaitReceive(Math.Min(timeoutMs, PollTimeoutMs));
    }

    /// <summary>
    /// On the queue's thread before its pool is released: waits briefly for the TX ring to drain, closes the
    /// socket and gives back every chunk the kernel still held.
    /// </summary>
    public override void DetachPool(PagePool pool)
    {
        if (_closed)
            return;
        for (int spin = 0; spin < 100 && _socket.TxRing!.Outstanding > 0; spin++)
        {
            _socket.WakeupTx();
            ReapCompletions();
            Thread.Sleep(1);
        }
        ReapCompletions();
        _final = _socket.GetStatistics();
        _closed = true;
        _socket.Dispose();
        int n;
        while ((n = _socket.ReclaimHeld(_done)) > 0)
            PutBack(_done.AsSpan(0, n));
    }

    public override void Dispose()
    {
        _closed = true;
        _socket.Dispose();
    }

    private void ReapCompletions()
    {
        int n;
        while ((n = _socket.Complete(_done)) > 0)
            PutBack(_done.AsSpan(0, n));
    }

    /// <summary>Drops this driver's reference on each page: its own pool's directly, another queue's through that pool's shared path.</summary>
    private void PutBack(ReadOnlySpan<NetMemRef> pages)
    {
        foreach (NetMemRef page in pages)
        {
            PagePool origin = PagePool.FromPage(page)!;
            origin.PutPage(page, allowDirect: origin == _pool);
        }
    }
}
