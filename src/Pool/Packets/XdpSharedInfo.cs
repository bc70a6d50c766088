using System.Runtime.InteropServices;

namespace UnmanagedPool;

/// <summary>
/// The part of the kernel's <c>struct skb_shared_info</c> a multi-buffer XDP buffer uses: <c>nr_frags</c>,
/// <c>xdp_frags_size</c>, <c>xdp_frags_truesize</c> and the <c>frags</c> array. It lives in the tailroom of the
/// head buffer, at <see cref="XdpBuff.DataHardEnd"/> (<c>xdp_data_hard_end</c>), so a fragmented buffer or frame
/// costs no allocation; it is written only once the buffer has fragments (<c>xdp_buff_has_frags</c>).
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal unsafe struct XdpSharedInfo
{
    /// <summary>Bytes the shared info takes at the end of the head buffer (the kernel's <c>SKB_DATA_ALIGN(sizeof(struct skb_shared_info))</c>, here 288).</summary>
    public const int Size = FragsOffset + MaxFrags * FragSize;

    /// <summary>The kernel's <c>MAX_SKB_FRAGS</c>: fragments one buffer may carry besides its head.</summary>
    public const int MaxFrags = Packet.MaxFrags;

    private const int FragsOffset = 16;
    private const int FragSize = 16;

    [FieldOffset(0)] public int NrFrags;
    [FieldOffset(4)] public uint XdpFragsSize;
    [FieldOffset(8)] public uint XdpFragsTruesize;

    /// <summary>The first of <see cref="MaxFrags"/> <see cref="SkbFrag"/> entries.</summary>
    [FieldOffset(FragsOffset)] public SkbFrag Frag0;

    /// <summary>The fragments written so far.</summary>
    public static ReadOnlySpan<SkbFrag> Frags(XdpSharedInfo* sinfo) => new(&sinfo->Frag0, sinfo->NrFrags);

    /// <summary>Entry <paramref name="i"/> (no bounds check: the caller holds <c>i &lt; MaxFrags</c>).</summary>
    public static SkbFrag* Frag(XdpSharedInfo* sinfo, int i) => &sinfo->Frag0 + i;
}
