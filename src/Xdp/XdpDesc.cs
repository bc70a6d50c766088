using System.Runtime.InteropServices;

namespace UnmanagedPool.AfXdp;

/// <summary>An RX or TX ring entry: the kernel's <c>struct xdp_desc</c> (16 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
public struct XdpDesc
{
    /// <summary>Offset of the frame's first byte in the UMEM (the chunk's offset plus the data's offset in it).</summary>
    [FieldOffset(0)] public ulong Addr;

    /// <summary>Length of the frame in bytes.</summary>
    [FieldOffset(8)] public uint Len;

    /// <summary>Descriptor options (<c>XDP_PKT_CONTD</c> for multi-buffer frames); zero otherwise.</summary>
    [FieldOffset(12)] public uint Options;
}

/// <summary>The kernel's <c>struct xdp_statistics</c>: frames the kernel dropped or could not serve.</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct XdpStatistics
{
    /// <summary><c>rx_dropped</c>: received frames dropped for other reasons (too long for a chunk, ...).</summary>
    public ulong RxDropped { get; init; }

    /// <summary><c>rx_invalid_descs</c>: fill ring entries the kernel refused (outside the UMEM, misaligned).</summary>
    public ulong RxInvalidDescs { get; init; }

    /// <summary><c>tx_invalid_descs</c>: TX ring entries the kernel refused.</summary>
    public ulong TxInvalidDescs { get; init; }

    /// <summary><c>rx_ring_full</c>: frames dropped because the RX ring was full (the receiver fell behind).</summary>
    public ulong RxRingFull { get; init; }

    /// <summary>
    /// <c>rx_fill_ring_empty_descs</c>: attempts to take a chunk that found the fill ring empty. In copy mode each
    /// such frame is dropped and counted in <see cref="RxDropped"/> as well; in zero-copy mode the NIC drops the
    /// frame and counts it in its own statistics.
    /// </summary>
    public ulong RxFillRingEmptyDescs { get; init; }

    /// <summary>
    /// <c>tx_ring_empty_descs</c>: transmit attempts that found the TX ring empty (not a loss: in copy mode every
    /// <c>poll</c> and kick of a socket with a TX ring tries to send).
    /// </summary>
    public ulong TxRingEmptyDescs { get; init; }

    /// <summary>
    /// Received frames the kernel dropped before the socket saw them: <see cref="RxDropped"/> (which includes the
    /// frames lost to an empty fill ring in copy mode), <see cref="RxRingFull"/> and <see cref="RxInvalidDescs"/>.
    /// </summary>
    public ulong RxLost => RxDropped + RxInvalidDescs + RxRingFull;
}
