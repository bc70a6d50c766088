using UnmanagedPool;
using UnmanagedPool.Native;

namespace PacketProcessor.Engine;

/// <summary>
/// One RX or TX descriptor: a posted buffer and, once the NIC has written it, the frame's length. The frame's
/// bytes start <see cref="Headroom"/> bytes into the buffer (the kernel's <c>XDP_PACKET_HEADROOM</c>).
/// A page-pool buffer has <see cref="Ptr"/> and <see cref="Page"/>; an array-pool buffer has <see cref="Array"/>.
/// </summary>
internal unsafe struct RxBuf
{
    /// <summary>Bytes before the frame in every buffer.</summary>
    public const int Headroom = Xdp.PacketHeadroom;

    /// <summary>Start of a native buffer (the page), or null for an array buffer.</summary>
    public byte* Ptr;

    /// <summary>The page's descriptor, for a page-pool buffer.</summary>
    public NetMem* Page;

    /// <summary>The array, for an array-pool buffer.</summary>
    public byte[]? Array;

    /// <summary>Frame bytes written by the NIC.</summary>
    public int Len;

    /// <summary>The queue whose pool the buffer came from (redirected frames carry it to the transmitting queue).</summary>
    public int Origin;

    /// <summary>
    /// Multi-buffer receive (<see cref="Drivers.NicQueue.ReceiveMultiBuffer"/>): on a frame's first descriptor, how
    /// many descriptors the frame spans (1 for a frame in one buffer); 0 on the descriptors that continue it.
    /// </summary>
    public int Segs;

    /// <summary>
    /// A TX descriptor of a multi-buffer queue: the frame (head and fragments) converted to an XdpFrame, returned
    /// with <see cref="Xdp.ReturnFrameRxNapi"/> at completion; <see cref="Len"/> is then the whole frame's length.
    /// </summary>
    public XdpFrame TxFrame;

    /// <summary>The frame's bytes.</summary>
    public readonly Span<byte> Frame => Ptr != null ? new Span<byte>(Ptr + Headroom, Len) : new Span<byte>(Array, Headroom, Len);
}

/// <summary>
/// A frame redirected to another queue's thread: an <see cref="XdpFrame"/> (or, without frame conversion, the
/// page and its address) for a page-pool buffer, the array otherwise.
/// </summary>
internal unsafe struct RedirectItem
{
    public XdpFrame Frame;
    public byte* Ptr;
    public NetMem* Page;
    public byte[]? Array;
    public int Len;
    public int Origin;
}

/// <summary>A frame passed to the stack: a <see cref="UnmanagedPool.Packet"/> over a pool page, or the array.</summary>
internal struct PassItem
{
    public Packet? Packet;
    public byte[]? Array;
}
