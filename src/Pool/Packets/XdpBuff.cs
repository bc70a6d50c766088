using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// The kernel's <c>struct xdp_buff</c>: the buffer an XDP program sees, from <see cref="DataHardStart"/> (start
/// of the frame) through the headroom, the metadata and the packet data to <see cref="DataEnd"/>. A value
/// living on the receive path's stack; <see cref="ToFrame"/> turns it into an <see cref="XdpFrame"/> whose
/// descriptor is written into the headroom, as the kernel does.
/// </summary>
/// <remarks>
/// A multi-buffer buffer (the kernel's XDP multi-buffer, as mvneta builds it) holds its first bytes here, from
/// <see cref="Data"/> to <see cref="DataEnd"/>, and the rest in up to <see cref="MaxFrags"/> page fragments added
/// with <see cref="AddFrag"/>. The fragments are recorded in the head buffer's tailroom (the kernel's
/// <c>skb_shared_info</c> after <see cref="DataHardEnd"/>), so the head's data must end at
/// <see cref="DataHardEnd"/> at the latest. The buffer holds one reference on the head page and one on each
/// fragment's page; <see cref="Xdp.ReturnBuff"/>, <see cref="ToFrame"/> followed by a frame return, or
/// <see cref="Packet.BuildFromXdp(in XdpBuff)"/> take them over.
/// </remarks>
public unsafe struct XdpBuff
{
    /// <summary>The kernel's <c>data_hard_start</c>: first byte of the frame.</summary>
    public byte* DataHardStart;

    /// <summary>The kernel's <c>data</c>: first byte of the packet.</summary>
    public byte* Data;

    /// <summary>The kernel's <c>data_end</c>: one past the last byte of the packet.</summary>
    public byte* DataEnd;

    /// <summary>The kernel's <c>data_meta</c>: start of the metadata before <see cref="Data"/>; <c>Data + 1</c> when there is none.</summary>
    public byte* DataMeta;

    /// <summary>The kernel's <c>frame_sz</c>: bytes of the whole frame from <see cref="DataHardStart"/>.</summary>
    public int FrameSize;

    /// <summary>The kernel's <c>rxq-&gt;mem</c>.</summary>
    public XdpMemInfo Mem;

    /// <summary>The kernel's <c>flags</c> (<c>XDP_FLAGS_HAS_FRAGS</c>); cleared by <see cref="Init"/>.</summary>
    public XdpBuffFlags Flags;

    /// <summary>The kernel's <c>MAX_SKB_FRAGS</c>: fragments a buffer may carry besides its head.</summary>
    public const int MaxFrags = XdpSharedInfo.MaxFrags;

    /// <summary>
    /// Bytes at the end of the head buffer that hold the fragment list of a multi-buffer buffer (the kernel's
    /// <c>SKB_DATA_ALIGN(sizeof(struct skb_shared_info))</c>); a driver leaves them out of its receive size.
    /// </summary>
    public const int SharedInfoSize = XdpSharedInfo.Size;

    /// <summary>The kernel's <c>xdp_init_buff</c>: a buffer of <paramref name="frameSize"/> bytes, no fragments.</summary>
    public void Init(int frameSize, XdpMemInfo mem)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(frameSize);
        FrameSize = frameSize;
        Mem = mem;
        Flags = XdpBuffFlags.None;
    }

    /// <summary>The kernel's <c>xdp_prepare_buff</c>: data starts <paramref name="headroom"/> bytes after <paramref name="hardStart"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Headroom plus data do not fit in <see cref="FrameSize"/>.</exception>
    public void Prepare(byte* hardStart, int headroom, int dataLength, bool metaValid)
    {
        if (hardStart == null)
            throw new ArgumentNullException(nameof(hardStart));
        if (headroom < 0 || dataLength < 0 || (long)headroom + dataLength > FrameSize)
            throw new ArgumentOutOfRangeException(nameof(dataLength), dataLength, $"Headroom {headroom} + data {dataLength} must fit in the {FrameSize}-byte frame (call Init first).");
        byte* data = hardStart + headroom;
        DataHardStart = hardStart;
        Data = data;
        DataEnd = data + dataLength;
        DataMeta = metaValid ? data : data + 1;
    }

    /// <summary>Packet bytes: <c>DataEnd - Data</c>.</summary>
    public readonly int Length => (int)(DataEnd - Data);

    /// <summary>Headroom bytes: <c>Data - DataHardStart</c>.</summary>
    public readonly int Headroom => (int)(Data - DataHardStart);

    /// <summary>Metadata bytes (0 when none): <c>Data - DataMeta</c>, clamped at 0.</summary>
    public readonly int MetaSize => Data - DataMeta > 0 ? (int)(Data - DataMeta) : 0;

    /// <summary>The linear packet bytes (the head; fragments not included).</summary>
    public readonly Span<byte> AsSpan() => new(Data, Length);

    /// <summary>The kernel's <c>xdp_buff_has_frags</c>.</summary>
    public readonly bool HasFrags => (Flags & XdpBuffFlags.HasFrags) != 0;

    /// <summary>
    /// The kernel's <c>xdp_data_hard_end</c>: where the fragment list starts, <see cref="SharedInfoSize"/> bytes
    /// before the end of the frame.
    /// </summary>
    public readonly byte* DataHardEnd => DataHardStart + FrameSize - SharedInfoSize;

    /// <summary>The kernel's <c>skb_shared_info-&gt;nr_frags</c> (0 without fragments).</summary>
    public readonly int NrFrags => HasFrags ? SharedInfo->NrFrags : 0;

    /// <summary>The fragments, in order (empty without fragments). Valid while the buffer holds them.</summary>
    public readonly ReadOnlySpan<SkbFrag> Frags => HasFrags ? XdpSharedInfo.Frags(SharedInfo) : default;

    /// <summary>The kernel's <c>xdp_frags_size</c>: bytes in the fragments.</summary>
    public readonly int FragsSize => HasFrags ? (int)SharedInfo->XdpFragsSize : 0;

    /// <summary>The kernel's <c>xdp_frags_truesize</c>: buffer bytes the fragments occupy.</summary>
    public readonly int FragsTrueSize => HasFrags ? (int)SharedInfo->XdpFragsTruesize : 0;

    /// <summary>The kernel's <c>xdp_get_buff_len</c>: head plus fragment bytes (what a program sees as the frame's length).</summary>
    public readonly int GetBuffLength() => HasFrags ? Length + (int)SharedInfo->XdpFragsSize : Length;

    internal readonly XdpSharedInfo* SharedInfo => (XdpSharedInfo*)DataHardEnd;

    /// <summary>
    /// The kernel's <c>xdp_buff_add_frag</c>: appends <paramref name="length"/> bytes at <paramref name="offset"/>
    /// of <paramref name="page"/> as the next fragment, the buffer taking over the caller's reference on the page.
    /// The first call marks the buffer <see cref="XdpBuffFlags.HasFrags"/> and starts the list in the tailroom.
    /// </summary>
    /// <returns>False, changing nothing, when the buffer already holds <see cref="MaxFrags"/> fragments (the caller keeps its reference).</returns>
    /// <exception cref="InvalidOperationException">The buffer is not prepared, or its data runs into the tailroom the list needs.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The bytes do not lie inside the page.</exception>
    public bool AddFrag(NetMemRef page, int offset, int length, int trueSize)
    {
        var frag = new SkbFrag(page, offset, length);
        ArgumentOutOfRangeException.ThrowIfLessThan(trueSize, length);
        XdpSharedInfo* sinfo = SharedInfo;
        if (!HasFrags)
        {
            if (DataHardStart == null || FrameSize < SharedInfoSize || DataEnd > (byte*)sinfo)
                FragThrowHelper.ThrowNoTailroom(Length, FrameSize);
            sinfo->NrFrags = 0;
            sinfo->XdpFragsSize = 0;
            sinfo->XdpFragsTruesize = 0;
            Flags |= XdpBuffFlags.HasFrags;
        }
        int n = sinfo->NrFrags;
        if (n >= MaxFrags)
            return false;
        *XdpSharedInfo.Frag(sinfo, n) = frag;
        sinfo->NrFrags = n + 1;
        sinfo->XdpFragsSize += (uint)length;
        sinfo->XdpFragsTruesize += (uint)trueSize;
        return true;
    }

    /// <summary>
    /// The kernel's <c>xdp_convert_buff_to_frame</c>: writes the frame descriptor at <see cref="DataHardStart"/>
    /// and returns it, or <see cref="XdpFrame.Null"/> when the headroom (less the metadata) cannot hold it, or the
    /// data runs past the frame (past <see cref="DataHardEnd"/> for a buffer with fragments). The fragment list
    /// stays where it is and the frame carries the buffer's flags, so the frame owns the head and every fragment.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // the redirect hot path; the kernel's is inline too
    public readonly XdpFrame ToFrame()
    {
        int headroom = Headroom;
        int metasize = MetaSize;
        if (DataHardStart == null || headroom - metasize < XdpFrame.DescriptorSize
            || DataEnd > (HasFrags ? DataHardEnd : DataHardStart + FrameSize))
            return XdpFrame.Null;
        var f = (XdpFrameDescriptor*)DataHardStart;
        // The fields in two 16-byte stores (Data, Len, Headroom; MetaSize, FrameSize, MemType, Flags: the layout
        // XdpFrameDescriptor pins, little-endian): the line is usually in the CPU that returned the page's last
        // frame, and eight separate stores to a line still on its way here fill the store buffer (measured in
        // perf/RESULTS-cross-thread.md).
        Vector128.Create((ulong)Data, (uint)Length | ((ulong)(uint)(headroom - XdpFrame.DescriptorSize) << 32)).Store((ulong*)f);
        Vector128.Create((uint)metasize, (uint)FrameSize, (uint)Mem.Type, (uint)Flags).Store((uint*)f + 4);
        // Volatile: the state word goes last, so a frame seen live on another thread has its fields written.
        Volatile.Write(ref f->State, XdpFrameDescriptor.Live);
        return new XdpFrame(f);
    }
}

/// <summary>The kernel's <c>enum xdp_buff_flags</c>.</summary>
[Flags]
public enum XdpBuffFlags : uint
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary><c>XDP_FLAGS_HAS_FRAGS</c>: the buffer carries fragments after its head (multi-buffer).</summary>
    HasFrags = 1,
}
