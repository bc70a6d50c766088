using System.Runtime.InteropServices;
using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// The kernel's <c>struct xdp_frame</c>: an XDP buffer on its way to another device or CPU, described by a small
/// header written at the start of its own headroom (so it costs no allocation). A pointer-sized handle.
/// </summary>
public readonly unsafe struct XdpFrame : IEquatable<XdpFrame>
{
    /// <summary>Bytes of headroom the frame's descriptor takes (the kernel's <c>sizeof(struct xdp_frame)</c>).</summary>
    public const int DescriptorSize = XdpFrameDescriptor.Size;

    private readonly XdpFrameDescriptor* _f;

    internal XdpFrame(XdpFrameDescriptor* f) => _f = f;

    /// <summary>No frame (a failed conversion).</summary>
    public static XdpFrame Null => default;

    /// <summary>Whether this is <see cref="Null"/>.</summary>
    public bool IsNull => _f == null;

    internal XdpFrameDescriptor* Descriptor => _f;

    /// <summary>The kernel's <c>data</c>.</summary>
    public byte* Data => _f->Data;

    /// <summary>The kernel's <c>len</c>: packet bytes.</summary>
    public int Length => (int)_f->Len;

    /// <summary>The kernel's <c>headroom</c>: bytes before the metadata, less the descriptor.</summary>
    public int Headroom => (int)_f->Headroom;

    /// <summary>The kernel's <c>metasize</c>.</summary>
    public int MetaSize => (int)_f->MetaSize;

    /// <summary>The kernel's <c>frame_sz</c>.</summary>
    public int FrameSize => (int)_f->FrameSize;

    /// <summary>The kernel's <c>mem_type</c>.</summary>
    public XdpMemType MemType => (XdpMemType)_f->MemType;

    /// <summary>Whether the frame is converted and not yet returned (a stale handle to a reused frame also reads true).</summary>
    public bool IsLive => _f != null && Volatile.Read(ref _f->State) == XdpFrameDescriptor.Live;

    /// <summary>The page holding the frame (the kernel's <c>virt_to_netmem(data)</c>, head of the run).</summary>
    public NetMemRef Page => NetMemRef.FromAddress(_f->Data);

    /// <summary>The linear packet bytes (the head; fragments not included).</summary>
    public Span<byte> AsSpan() => new(_f->Data, (int)_f->Len);

    /// <summary>The kernel's <c>flags</c>, as the buffer had them.</summary>
    public XdpBuffFlags Flags => (XdpBuffFlags)_f->Flags;

    /// <summary>The kernel's <c>xdp_frame_has_frags</c>.</summary>
    public bool HasFrags => (_f->Flags & (uint)XdpBuffFlags.HasFrags) != 0;

    /// <summary>The kernel's <c>skb_shared_info-&gt;nr_frags</c> of the frame (0 without fragments).</summary>
    public int NrFrags => HasFrags ? SharedInfo->NrFrags : 0;

    /// <summary>The fragments, in order (empty without fragments). Valid until the frame is returned.</summary>
    public ReadOnlySpan<SkbFrag> Frags => HasFrags ? XdpSharedInfo.Frags(SharedInfo) : default;

    /// <summary>The kernel's <c>xdp_get_frame_len</c>: head plus fragment bytes.</summary>
    public int GetFrameLength() => HasFrags ? (int)_f->Len + (int)SharedInfo->XdpFragsSize : (int)_f->Len;

    /// <summary>The kernel's <c>xdp_get_shared_info_from_frame</c>: the list at the end of the frame (the descriptor sits at its start).</summary>
    internal XdpSharedInfo* SharedInfo => (XdpSharedInfo*)((byte*)_f + _f->FrameSize - XdpSharedInfo.Size);

    /// <inheritdoc />
    public bool Equals(XdpFrame other) => _f == other._f;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is XdpFrame other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => ((nint)_f).GetHashCode();

    /// <summary>Identity equality.</summary>
    public static bool operator ==(XdpFrame left, XdpFrame right) => left._f == right._f;

    /// <summary>Identity inequality.</summary>
    public static bool operator !=(XdpFrame left, XdpFrame right) => left._f != right._f;

    /// <inheritdoc />
    public override string ToString() => IsNull ? "XdpFrame(null)" : $"XdpFrame(0x{(nint)_f:x}, len {Length}, {MemType})";
}

/// <summary>The frame header written into the headroom (the kernel's <c>struct xdp_frame</c> fields plus a state word).</summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal unsafe struct XdpFrameDescriptor
{
    public const int Size = 40;

    /// <summary>State word of a frame converted and not yet returned ("XDPFRAME").</summary>
    public const ulong Live = 0x454d4152_46504458UL;

    /// <summary>State word of a returned frame.</summary>
    public const ulong Returned = 0xdead_0000_0000_0058UL;

    [FieldOffset(0)] public byte* Data;
    [FieldOffset(8)] public uint Len;
    [FieldOffset(12)] public uint Headroom;
    [FieldOffset(16)] public uint MetaSize;
    [FieldOffset(20)] public uint FrameSize;
    [FieldOffset(24)] public uint MemType;
    [FieldOffset(28)] public uint Flags;
    [FieldOffset(32)] public ulong State;
}
