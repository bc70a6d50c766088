using System.Runtime.InteropServices;

namespace UnmanagedPool.Native;

/// <summary>
/// The descriptor of one page (or of the head page of an order-n run): the kernel's <c>struct netmem</c>
/// (the page_pool fields of <c>struct page</c>) with the same field order and 64-bit offsets, followed by what
/// a region needs to find its page again. Descriptors live in a contiguous table in the first pages of their
/// <see cref="PageRegion"/>, never inside the page they describe.
/// </summary>
/// <remarks>
/// Layout (pinned by a test):
/// <code>
///  0 Flags         8 PpMagic      16 Pp           24 PpMappingPad
/// 32 DmaAddr      40 PpRefCount   48 MapCount     52 RefCount
/// 56 Order        57 State        58 RegionShift  59 Nid          60 PageIndex
/// </code>
/// </remarks>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct NetMem
{
    /// <summary>Size of one descriptor in bytes (one cache line).</summary>
    public const int Size = 64;

    /// <summary>Bit position of the <see cref="MemoryProviderKind"/> in <see cref="Flags"/>.</summary>
    public const int ProviderShift = 56;

    /// <summary>
    /// The kernel's <c>flags</c>. The top byte (<see cref="ProviderShift"/>) names the <see cref="MemoryProviderKind"/>
    /// that handed the page out, set by the provider; the pool leaves the field alone.
    /// </summary>
    [FieldOffset(0)] public ulong Flags;

    /// <summary>
    /// The kernel's <c>pp_magic</c>: <see cref="NetMemRef.PpSignature"/> while a page pool owns the page, compared under
    /// <see cref="NetMemRef.PpMagicMask"/>; bit 1 is set while page references (<see cref="NetMemRef.GetPage"/>) may
    /// be held besides the pool's, until the pool recycles the page with none left.
    /// </summary>
    [FieldOffset(8)] public ulong PpMagic;

    /// <summary>The kernel's <c>pp</c>: an opaque handle naming the owning pool, zero when none.</summary>
    [FieldOffset(16)] public nint Pp;

    /// <summary>The kernel's <c>_pp_mapping_pad</c>; kept zero.</summary>
    [FieldOffset(24)] public ulong PpMappingPad;

    /// <summary>The kernel's <c>dma_addr</c>: the device address of the page when the pool maps it.</summary>
    [FieldOffset(32)] public ulong DmaAddr;

    /// <summary>The kernel's <c>pp_ref_count</c> (formerly <c>pp_frag_count</c>): references held on a pool page.</summary>
    [FieldOffset(40)] public long PpRefCount;

    /// <summary>
    /// The kernel's <c>_mapcount</c>; kept at -1 as the kernel does for unmapped pages. A page pool writes -1 here when it
    /// takes a page back for reuse (to take the line for writing in one transfer), so a provider must keep it at -1.
    /// </summary>
    [FieldOffset(48)] public int MapCount;

    /// <summary>The kernel's <c>_refcount</c>: page references; the page goes back to its provider when it drops to zero.</summary>
    [FieldOffset(52)] public int RefCount;

    /// <summary>
    /// Zeroes the page-pool fields (<see cref="PpRefCount"/>, <see cref="PpMagic"/>, <see cref="Pp"/>,
    /// <see cref="DmaAddr"/>): what a memory provider does as a page leaves it or comes back (see
    /// <see cref="IMemoryProvider"/>), besides setting <see cref="RefCount"/>.
    /// </summary>
    public void ClearPoolFields()
    {
        PpRefCount = 0;
        PpMagic = 0;
        Pp = 0;
        DmaAddr = 0;
    }

    /// <summary>Allocation order: the run is 2^Order contiguous pages, described by the head descriptor.</summary>
    [FieldOffset(56)] public byte Order;

    /// <summary>A <see cref="PageState"/> value kept by the region's provider.</summary>
    [FieldOffset(57)] public byte State;

    /// <summary>log2 of the size of the region holding the page: the descriptor finds its region base by masking.</summary>
    [FieldOffset(58)] public byte RegionShift;

    /// <summary>NUMA node the page's region was placed on, or -1 when unknown.</summary>
    [FieldOffset(59)] public sbyte Nid;

    /// <summary>Index of the head page of the run within the region (equal to the own index for a head page).</summary>
    [FieldOffset(60)] public int PageIndex;
}

/// <summary>The provider's view of a descriptor (<see cref="NetMem.State"/>).</summary>
public enum PageState : byte
{
    /// <summary>The slot describes a page of the descriptor table itself; never handed out.</summary>
    Header = 0,

    /// <summary>The page is free in its provider.</summary>
    Free = 1,

    /// <summary>The page is the head of a run handed out by the provider.</summary>
    InUse = 2,

    /// <summary>The page is a tail page of a handed-out run; its <see cref="NetMem.PageIndex"/> names the head.</summary>
    Tail = 3,
}
