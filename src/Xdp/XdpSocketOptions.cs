namespace UnmanagedPool.AfXdp;

/// <summary>How an AF_XDP socket binds: zero-copy where the driver supports it, or copy.</summary>
public enum XdpBindMode
{
    /// <summary>Zero-copy where the driver supports it, copy otherwise (the kernel's choice with no mode flag).</summary>
    Auto = 0,

    /// <summary><c>XDP_COPY</c>: the kernel copies every frame into the UMEM (works on any interface).</summary>
    Copy,

    /// <summary><c>XDP_ZEROCOPY</c>: the driver receives straight into the UMEM; fails where unsupported.</summary>
    ZeroCopy,
}

/// <summary>Parameters of an <see cref="XdpSocket"/>.</summary>
public sealed class XdpSocketOptions
{
    /// <summary>Default entries in each ring (the kernel's and libxdp's default, 2048).</summary>
    public const int DefaultRingSize = 2048;

    /// <summary>The interface to bind to (by name).</summary>
    public required string Interface { get; init; }

    /// <summary>The receive queue to bind to (0 for an interface with one queue, such as a veth).</summary>
    public int QueueId { get; init; }

    /// <summary>Entries in the RX ring (a power of two; 0 for a transmit-only socket).</summary>
    public int RxSize { get; init; } = DefaultRingSize;

    /// <summary>Entries in the TX ring (a power of two; 0 for a receive-only socket).</summary>
    public int TxSize { get; init; } = DefaultRingSize;

    /// <summary>
    /// Entries in the fill ring (a power of two). A ring of 2048 holds about 2 ms at 1 Mpps: a receiver preempted
    /// longer loses frames as <see cref="XdpStatistics.RxFillRingEmptyDescs"/>.
    /// </summary>
    public int FillSize { get; init; } = DefaultRingSize;

    /// <summary>Entries in the completion ring (a power of two).</summary>
    public int CompletionSize { get; init; } = DefaultRingSize;

    /// <summary>Copy, zero-copy or whichever the driver supports.</summary>
    public XdpBindMode Mode { get; init; }

    /// <summary>Bind with <c>XDP_USE_NEED_WAKEUP</c>: the kernel says through the ring flags when it needs a system call.</summary>
    public bool NeedWakeup { get; init; } = true;

    /// <summary>Bytes the kernel leaves free at the start of each chunk before the frame (beyond <c>XDP_PACKET_HEADROOM</c>); 0 by default.</summary>
    public int Headroom { get; init; }

    /// <summary>
    /// Another socket whose UMEM this one shares (<c>XDP_SHARED_UMEM</c>); its UMEM is used and no other is
    /// registered. This socket gets its own fill and completion rings, so it binds to another queue or interface;
    /// its <see cref="Mode"/> and <see cref="NeedWakeup"/> are those of the UMEM's owner (the kernel takes no flag here).
    /// </summary>
    public XdpSocket? SharedUmem { get; init; }
}
