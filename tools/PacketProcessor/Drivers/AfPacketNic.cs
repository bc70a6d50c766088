using System.Runtime.InteropServices;
using PacketProcessor.Engine;
using static PacketProcessor.Drivers.LinuxNet;

namespace PacketProcessor.Drivers;

/// <summary>
/// One queue on a real interface: an AF_PACKET socket bound to it, joined to a PACKET_FANOUT_HASH group with the
/// other queues' sockets so that the kernel spreads flows over them. <c>recvmmsg</c> writes frames straight into
/// the posted buffers (after the headroom); <c>sendmmsg</c> transmits, copying, so TX completes on return.
/// </summary>
internal sealed unsafe class AfPacketNic : NicQueue
{
    private const int Batch = 64;
    private const int PollTimeoutMs = 10;

    private int _fd;
    private readonly MMsgHdr* _msgs;
    private readonly IoVec* _iov;
    private readonly GCHandle[] _pins = new GCHandle[Batch];
    private readonly RxBuf[] _scratch = new RxBuf[Batch];   // multi-buffer: the offered buffers while they are laid out

    private AfPacketNic(int fd)
    {
        _fd = fd;
        _msgs = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(Batch * sizeof(MMsgHdr)));
        _iov = (IoVec*)NativeMemory.AllocZeroed((nuint)(Batch * sizeof(IoVec)));
    }

    /// <summary>Errors <c>recvmmsg</c> returned other than "no frame yet" (the interface going down, ...).</summary>
    public long ReceiveErrors;

    private long _kernelDrops;   // tp_drops summed: written by the queue's thread, read by the reporting thread

    /// <summary>
    /// Frames the kernel dropped because the socket's receive buffer was full (<c>PACKET_STATISTICS</c> tp_drops,
    /// which the kernel resets on every read, so they are summed here on each idle wait and at close).
    /// </summary>
    public override long KernelDrops => Volatile.Read(ref _kernelDrops); // Volatile: summed on the queue's thread

    /// <summary>Opens one queue's socket on <paramref name="interfaceName"/>, in fanout group <paramref name="fanoutGroup"/> when <paramref name="queueCount"/> is above 1.</summary>
    /// <exception cref="DriverException">No such interface, no privileges, or another failure (with the system's message).</exception>
    public static AfPacketNic Open(string interfaceName, int queueCount, int fanoutGroup)
    {
        if (!OperatingSystem.IsLinux())
            throw new DriverException(DriverException.SystemError, "The afpacket driver needs Linux (AF_PACKET sockets).");
        if (string.IsNullOrWhiteSpace(interfaceName))
            throw new DriverException(DriverException.NoInterface, "The afpacket driver needs --interface NAME (see `ip link`).");
        uint ifindex = IfNameToIndex(interfaceName);
        if (ifindex == 0)
            throw new DriverException(DriverException.NoInterface, $"Interface '{interfaceName}' does not exist (see `ip link` for the interfaces of this network namespace).");
        // Protocol 0 at creation: the socket receives nothing until it is bound to the interface below.
        int fd = Socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is EPERM or EACCES)
                throw new DriverException(DriverException.NoPrivileges,
                    "Opening an AF_PACKET socket needs root or the CAP_NET_RAW capability: run as root (sudo), or use --driver synthetic.");
            throw new DriverException(DriverException.SystemError, $"socket(AF_PACKET) failed: {Describe(errno)}.");
        }
        try
        {
            int one = 1;
            // Frames this process sends (l2fwd, redirect) would otherwise come back in as received.
            SetSockOpt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(int));
            int rcvbuf = 4 << 20;
            SetSockOpt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(int));
            var addr = new SockaddrLl { Family = AF_PACKET, Protocol = Htons(ETH_P_ALL), IfIndex = (int)ifindex };
            if (Bind(fd, &addr, (uint)sizeof(SockaddrLl)) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno is ENODEV or ENXIO)
                    throw new DriverException(DriverException.NoInterface, $"Interface '{interfaceName}' went away: {Describe(errno)}.");
                throw new DriverException(DriverException.SystemError, $"bind to '{interfaceName}' failed: {Describe(errno)}.");
            }
            if (queueCount > 1)
            {
                int fanout = (fanoutGroup & 0xffff) | (PACKET_FANOUT_HASH << 16);
                if (SetSockOpt(fd, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(int)) != 0)
                    throw new DriverException(DriverException.SystemError, $"PACKET_FANOUT on '{interfaceName}' failed: {Describe(Marshal.GetLastPInvokeError())}.");
            }
            return new AfPacketNic(fd);
        }
        catch
        {
            Close(fd);
            throw;
        }
    }

    public override bool WaitsWhenIdle => true;

    public override int Receive(Span<RxBuf> posted, int capacity)
    {
        int n = Math.Min(posted.Length, Batch);
        bool pinned = false;
        for (int i = 0; i < n; i++)
        {
            _iov[i].Base = FrameData(posted[i], i, ref pinned);
            _iov[i].Len = (nuint)capacity;
            _msgs[i].Hdr = new MsgHdr { Iov = &_iov[i], IovLen = 1 };
            _msgs[i].Len = 0;
        }
        int r = RecvMMsg(_fd, _msgs, (uint)n, MSG_DONTWAIT, null);
        int errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
        if (pinned)
            ReleasePins(n);
        if (r < 0)
        {
            if (errno is not (EAGAIN or EINTR))
                ReceiveErrors++;
            return 0;
        }
        for (int i = 0; i < r; i++)
            posted[i].Len = (_msgs[i].Hdr.Flags & MSG_TRUNC) != 0 ? -1 : (int)_msgs[i].Len;
        return r;
    }

    public override bool ReordersPosted => true;

    /// <summary>
    /// Multi-buffer receive with one <c>recvmmsg</c>: each message scatters into as many posted buffers as a frame of
    /// <paramref name="maxFrame"/> bytes needs (the head's room first, then whole buffers, as a NIC posts its RX
    /// descriptors), and the completed frames are then laid out in the posted order the queue reads: each frame's
    /// buffers in a row, the buffers no frame used after them. A frame short enough for one buffer is moved whole
    /// into its head (the few bytes past the head's room), as a NIC writes it into one descriptor.
    /// </summary>
    public override int ReceiveMultiBuffer(Span<RxBuf> posted, int capacity, int headCapacity, int maxFrame)
    {
        int per = maxFrame <= capacity ? 1 : 1 + (maxFrame - headCapacity + capacity - 1) / capacity;
        int messages = Math.Min(Math.Min(posted.Length, Batch) / per, Batch);
        if (messages == 0)
            return 0;
        int offered = messages * per;
        for (int m = 0; m < messages; m++)
        {
            for (int k = 0; k < per; k++)
            {
                int i = m * per + k;
                _iov[i].Base = posted[i].Ptr + RxBuf.Headroom;
                _iov[i].Len = (nuint)(per == 1 ? capacity : k == 0 ? headCapacity : capacity);
            }
            _msgs[m].Hdr = new MsgHdr { Iov = &_iov[m * per], IovLen = (nuint)per };
            _msgs[m].Len = 0;
        }
        int r = RecvMMsg(_fd, _msgs, (uint)messages, MSG_DONTWAIT, null);
        if (r <= 0)
        {
            if (r < 0 && Marshal.GetLastPInvokeError() is not (EAGAIN or EINTR))
                ReceiveErrors++;
            return 0;
        }
        // Completed frames to the front in message order, then every buffer left unused.
        Span<RxBuf> offeredBufs = posted[..offered];
        offeredBufs.CopyTo(_scratch);
        int done = 0;
        for (int m = 0; m < r; m++)
        {
            ref RxBuf head = ref _scratch[m * per];
            int len = (int)_msgs[m].Len;
            int segs;
            if ((_msgs[m].Hdr.Flags & MSG_TRUNC) != 0 || len > maxFrame)
            {
                segs = 1;
                head.Len = -1;
            }
            else if (per == 1 || len <= headCapacity)
            {
                segs = 1;
                head.Len = len;
            }
            else if (len <= capacity)
            {
                // One buffer holds it: the bytes past the head's room come back from the second buffer.
                Buffer.MemoryCopy(_scratch[m * per + 1].Ptr + RxBuf.Headroom, head.Ptr + RxBuf.Headroom + headCapacity, capacity - headCapacity, len - headCapacity);
                segs = 1;
                head.Len = len;
            }
            else
            {
                segs = 1 + (len - headCapacity + capacity - 1) / capacity;
                head.Len = headCapacity;
                int left = len - headCapacity;
                for (int k = 1; k < segs; k++)
                {
                    ref RxBuf f = ref _scratch[m * per + k];
                    f.Len = Math.Min(left, capacity);
                    f.Segs = 0;
                    left -= f.Len;
                }
            }
            head.Segs = segs;
            for (int k = 0; k < segs; k++)
                posted[done++] = _scratch[m * per + k];
        }
        int next = done;
        for (int m = 0; m < messages; m++)
        {
            int used = m < r ? _scratch[m * per].Segs : 0;
            for (int k = used; k < per; k++)
                posted[next++] = _scratch[m * per + k];
        }
        return done;
    }

    public override int Transmit(ReadOnlySpan<RxBuf> frames)
    {
        int sent = 0;
        while (sent < frames.Length)
        {
            int n = Math.Min(frames.Length - sent, Batch);
            bool pinned = false;
            for (int i = 0; i < n; i++)
            {
                _iov[i].Base = FrameData(frames[sent + i], i, ref pinned);
                _iov[i].Len = (nuint)frames[sent + i].Len;
                _msgs[i].Hdr = new MsgHdr { Iov = &_iov[i], IovLen = 1 };
            }
            int r = SendMMsg(_fd, _msgs, (uint)n, 0);
            if (pinned)
                ReleasePins(n);
            if (r <= 0)
                break; // ENOBUFS, interface down: the rest is dropped and counted by the caller
            sent += r;
        }
        return sent;
    }

    /// <summary>
    /// Where the frame's bytes start: a pool page's address, or a managed array pinned into slot
    /// <paramref name="slot"/> for the duration of one system call (<paramref name="pinned"/> is then set).
    /// </summary>
    private byte* FrameData(in RxBuf b, int slot, ref bool pinned)
    {
        if (b.Ptr != null)
            return b.Ptr + RxBuf.Headroom;
        _pins[slot] = GCHandle.Alloc(b.Array, GCHandleType.Pinned);
        pinned = true;
        return (byte*)_pins[slot].AddrOfPinnedObject() + RxBuf.Headroom;
    }

    private void ReleasePins(int n)
    {
        for (int i = 0; i < n; i++)
            if (_pins[i].IsAllocated)
                _pins[i].Free();
    }

    public override void Prepare()
    {
        // Each call does nothing: no message asked for or sent, no wait.
        RecvMMsg(_fd, _msgs, 0, MSG_DONTWAIT, null);
        SendMMsg(_fd, _msgs, 0, MSG_DONTWAIT);
        var pfd = new PollFd { Fd = _fd, Events = POLLIN };
        Poll(&pfd, 1, 0);
        ReadDrops();
        _ = Marshal.GetLastPInvokeError();
    }

    public override void WaitForTraffic(int timeoutMs)
    {
        var pfd = new PollFd { Fd = _fd, Events = POLLIN };
        Poll(&pfd, 1, Math.Min(timeoutMs, PollTimeoutMs));
        ReadDrops();
    }

    /// <summary>After the last poll: the drops since the last idle wait count too.</summary>
    public override void DetachPool(UnmanagedPool.PagePool pool) => ReadDrops();

    private void ReadDrops()
    {
        // struct tpacket_stats { u32 tp_packets; u32 tp_drops; }
        uint* stats = stackalloc uint[2];
        uint len = 2 * sizeof(uint);
        if (_fd >= 0 && GetSockOpt(_fd, SOL_PACKET, PACKET_STATISTICS, stats, &len) == 0 && stats[1] != 0)
            // Volatile: the reporting thread reads the sum while this queue runs.
            Volatile.Write(ref _kernelDrops, _kernelDrops + stats[1]);
    }

    public override void Dispose()
    {
        if (_fd >= 0)
        {
            ReadDrops();
            Close(_fd);
            _fd = -1;
            NativeMemory.Free(_msgs);
            NativeMemory.Free(_iov);
        }
    }
}
