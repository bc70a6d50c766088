using System.Runtime.InteropServices;
using UnmanagedPool.Native.Interop;

namespace UnmanagedPool.Native;

/// <summary>
/// One aligned block of native memory (2 MiB by default, any power of two from 64 KiB to 1 GiB) cut into 4 KiB
/// pages. Its first pages hold the descriptor table: descriptor <c>i</c> describes page <c>i</c>, so the
/// descriptor of any address is <c>base + ((address - base) &gt;&gt; 12) * 64</c>, the way the kernel's
/// <c>vmemmap</c> finds a <c>struct page</c>. The pages that hold the table are never handed out.
/// </summary>
/// <remarks>
/// The memory is owned by a <see cref="SafeHandle"/> and registered for <see cref="NetMemRef.FromAddress(void*)"/>
/// from construction until <see cref="Dispose"/>. The registry holds the region while it is registered, so a
/// region is freed only by Dispose. Its memory is never unmapped (see <see cref="RegionMemory"/>): after Dispose
/// the physical pages go back to the OS and every descriptor reads as zero, so a thread that resolves an address
/// while another disposes the region, or a <see cref="NetMemRef"/> kept past the region's end, reads a descriptor
/// that says "not handed out, not a pool page" instead of faulting.
/// </remarks>
public sealed unsafe class PageRegion : IDisposable
{
    private readonly RegionHandle _handle;
    private int _disposed;

    /// <summary>Allocates and registers a region.</summary>
    /// <param name="shift">log2 of the region size, from 16 (64 KiB) to 30 (1 GiB).</param>
    /// <param name="numaNode">NUMA node to prefer for the region's memory, or -1 for none.</param>
    /// <param name="hugePages">Advise the kernel to back the region with transparent huge pages.</param>
    /// <param name="lockMemory">Lock the region in RAM with <c>mlock</c>.</param>
    /// <exception cref="ArgumentOutOfRangeException">A shift outside 16..30 or a node outside -1..63.</exception>
    /// <exception cref="OutOfMemoryException">The allocation failed.</exception>
    public PageRegion(int shift = PageConstants.DefaultRegionShift, int numaNode = -1, bool hugePages = true, bool lockMemory = false)
        : this(shift, numaNode, hugePages, lockMemory, hugeTlb: false)
    {
    }

    /// <summary>Allocates and registers a region, from explicit huge pages when <paramref name="hugeTlb"/> asks and the system has them.</summary>
    /// <param name="shift">log2 of the region size, from 16 (64 KiB) to 30 (1 GiB).</param>
    /// <param name="numaNode">NUMA node to prefer for the region's memory, or -1 for none.</param>
    /// <param name="hugePages">Advise the kernel to back the region with transparent huge pages (when it is not on explicit huge pages).</param>
    /// <param name="lockMemory">Lock the region in RAM with <c>mlock</c>.</param>
    /// <param name="hugeTlb">
    /// Map the region with <c>MAP_HUGETLB</c>; where the system has no free huge page of the needed count (or the
    /// region is smaller than one), fall back to ordinary memory and <paramref name="hugePages"/> advice.
    /// </param>
    internal PageRegion(int shift, int numaNode, bool hugePages, bool lockMemory, bool hugeTlb)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shift, PageConstants.MinRegionShift);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(shift, PageConstants.MaxRegionShift);
        ArgumentOutOfRangeException.ThrowIfLessThan(numaNode, -1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(numaNode, 63);

        Shift = shift;
        nuint size = (nuint)1 << shift;
        void* memory = null;
        if (hugeTlb)
        {
            memory = RegionMemory.AllocateHugeTlb(shift, out int hugeTlbError);
            HugeTlb = memory != null;
            HugeTlbError = hugeTlbError;
        }
        if (memory == null)
            memory = RegionMemory.Allocate(shift);
        _handle = new RegionHandle((nint)memory, shift) { HugeTlb = HugeTlb };
        Base = (nint)memory;
        PageCount = (int)(size >> PageConstants.PageShift);
        HeaderPages = (PageCount * NetMem.Size + PageConstants.PageSize - 1) >> PageConstants.PageShift;
        NumaNode = numaNode;

        if (LibC.IsLinux)
        {
            if (hugePages && !HugeTlb)
            {
                HugePagesAdvised = LibC.MAdvise(memory, size, LibC.MADV_HUGEPAGE) == 0;
                if (!HugePagesAdvised)
                    HugePagesError = Marshal.GetLastPInvokeError();
            }
            if (numaNode >= 0)
            {
                NumaBound = LibC.MBindPreferred(memory, size, numaNode) == 0;
                if (!NumaBound)
                    NumaError = Marshal.GetLastPInvokeError();
            }
            if (lockMemory)
            {
                Locked = LibC.MLock(memory, size) == 0;
                if (!Locked)
                    LockError = Marshal.GetLastPInvokeError();
                _handle.Locked = Locked;
            }
        }

        InitializeDescriptors();
        RegionRegistry.Register(this);
    }

    /// <summary>Address of the first byte of the region (aligned to its size).</summary>
    public nint Base { get; }

    /// <summary>log2 of <see cref="Size"/>.</summary>
    public int Shift { get; }

    /// <summary>Size of the region in bytes.</summary>
    public nuint Size => (nuint)1 << Shift;

    /// <summary>Number of 4 KiB pages in the region, the descriptor-table pages included.</summary>
    public int PageCount { get; }

    /// <summary>Number of leading pages that hold the descriptor table.</summary>
    public int HeaderPages { get; }

    /// <summary>Number of pages that can be handed out.</summary>
    public int UsablePages => PageCount - HeaderPages;

    /// <summary>The NUMA node asked for, or -1.</summary>
    public int NumaNode { get; }

    /// <summary>Whether <c>mbind</c> accepted the node preference.</summary>
    public bool NumaBound { get; }

    /// <summary>errno of a failed <c>mbind</c>, else 0.</summary>
    public int NumaError { get; }

    /// <summary>Whether the region is mapped on explicit huge pages (<c>MAP_HUGETLB</c>).</summary>
    internal bool HugeTlb { get; }

    /// <summary>errno of a <c>MAP_HUGETLB</c> mapping asked for and refused (ENOMEM: no free huge pages), else 0.</summary>
    internal int HugeTlbError { get; }

    /// <summary>Whether <c>madvise(MADV_HUGEPAGE)</c> succeeded.</summary>
    public bool HugePagesAdvised { get; }

    /// <summary>errno of a failed <c>madvise</c>, else 0.</summary>
    public int HugePagesError { get; }

    /// <summary>Whether <c>mlock</c> succeeded.</summary>
    public bool Locked { get; }

    /// <summary>errno of a failed <c>mlock</c>, else 0.</summary>
    public int LockError { get; }

    /// <summary>Whether the region has been disposed and its memory freed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Pointer to the descriptor table (descriptor 0 describes the page at <see cref="Base"/>).</summary>
    public NetMem* Descriptors => (NetMem*)Base;

    /// <summary>Opaque slot for the region's owner (a provider keeps its bookkeeping here).</summary>
    internal object? OwnerState { get; set; }

    /// <summary>The descriptor of page <paramref name="index"/> (no compound-head resolution).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The index is outside the region.</exception>
    public NetMemRef this[int index]
    {
        get
        {
            if ((uint)index >= (uint)PageCount)
                throw new ArgumentOutOfRangeException(nameof(index), index, $"The region has {PageCount} pages.");
            return new NetMemRef(Descriptors + index);
        }
    }

    /// <summary>Address of page <paramref name="index"/>.</summary>
    public byte* PageAddress(int index) => (byte*)Base + ((nint)index << PageConstants.PageShift);

    /// <summary>Whether <paramref name="address"/> lies inside this region.</summary>
    public bool Contains(void* address) => (nuint)address - (nuint)Base < Size;

    /// <summary>The live region that contains <paramref name="address"/>, or null.</summary>
    public static PageRegion? FromAddress(void* address)
    {
        NetMem* slot = RegionRegistry.Lookup((nuint)address);
        if (slot == null)
            return null;
        return RegionRegistry.Find((nint)((nuint)address & ~(((nuint)1 << slot->RegionShift) - 1)))
            ?? RegionRegistry.Find(FindBaseSlow(address));
    }

    private static nint FindBaseSlow(void* address)
    {
        for (int shift = PageConstants.MinRegionShift; shift <= PageConstants.MaxRegionShift; shift++)
        {
            nint candidate = (nint)((nuint)address & ~(((nuint)1 << shift) - 1));
            var r = RegionRegistry.Find(candidate);
            if (r != null && r.Contains(address))
                return candidate;
        }
        return 0;
    }

    /// <summary>
    /// Unregisters the region and gives its memory back to the OS. The descriptors stay readable and read as zero:
    /// a page still referenced is refused by every check (not handed out, not a pool page), never a fault.
    /// </summary>
    public void Dispose()
    {
        // Interlocked: disposal may race between an owner and a finalizer-less second caller; only one frees.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        RegionRegistry.Unregister(this);
        _handle.Dispose();
    }

    /// <summary>Gives the pages in [<paramref name="firstPage"/>, +count) back to the OS without unmapping them.</summary>
    /// <returns>True when <c>madvise(MADV_DONTNEED)</c> succeeded.</returns>
    public bool Discard(int firstPage, int count)
    {
        if ((uint)firstPage < (uint)HeaderPages || (uint)(firstPage + count) > (uint)PageCount || count <= 0)
            throw new ArgumentOutOfRangeException(nameof(firstPage));
        return LibC.IsLinux && LibC.MAdvise(PageAddress(firstPage), (nuint)count << PageConstants.PageShift, LibC.MADV_DONTNEED) == 0;
    }

    private void InitializeDescriptors()
    {
        NetMem* table = Descriptors;
        NativeMemory.Clear(table, (nuint)HeaderPages << PageConstants.PageShift);
        for (int i = 0; i < PageCount; i++)
        {
            NetMem* d = table + i;
            d->RegionShift = (byte)Shift;
            d->Nid = (sbyte)NumaNode;
            d->MapCount = -1;
            d->PageIndex = i;
            d->State = i < HeaderPages ? (byte)PageState.Header : (byte)PageState.Free;
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"PageRegion 0x{Base:x} {Size >> 10} KiB, {UsablePages} pages";

    private sealed class RegionHandle : SafeHandle
    {
        private readonly int _shift;

        public RegionHandle(nint memory, int shift) : base(0, ownsHandle: true)
        {
            _shift = shift;
            SetHandle(memory);
        }

        public bool Locked { get; set; }

        public bool HugeTlb { get; init; }

        public override bool IsInvalid => handle == 0;

        protected override bool ReleaseHandle()
        {
            if (Locked)
                LibC.MUnlock((void*)handle, (nuint)1 << _shift);
            // Never unmapped: the physical pages go back to the OS, the range stays readable (all zero) for readers
            // that found the region before it was unregistered, and the next region of this size reuses it.
            if (HugeTlb)
                RegionMemory.RetireHugeTlb((void*)handle, _shift);
            else
                RegionMemory.Retire((void*)handle, _shift);
            return true;
        }
    }
}
