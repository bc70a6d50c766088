using System.Runtime.CompilerServices;

namespace UnmanagedPool.Native;

/// <summary>
/// A reference to a page descriptor: the kernel's <c>netmem_ref</c>. One pointer wide, compared by identity.
/// For an order-n run it refers to the head descriptor, and <see cref="Size"/> covers the whole run.
/// </summary>
public readonly unsafe struct NetMemRef : IEquatable<NetMemRef>
{
    /// <summary>
    /// The kernel's <c>PP_SIGNATURE</c>: <c>0x40 + POISON_POINTER_DELTA</c> on 64-bit, written to
    /// <see cref="NetMem.PpMagic"/> while a page pool owns the page.
    /// </summary>
    public const ulong PpSignature = 0xdead000000000040UL;

    /// <summary>The kernel's <c>PP_MAGIC_MASK</c> for the bits of pp_magic compared with the signature.</summary>
    public const ulong PpMagicMask = ~0x3UL;

    private readonly NetMem* _desc;

    /// <summary>Wraps a descriptor pointer. The pointer must be a descriptor inside a live region, or null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NetMemRef(NetMem* descriptor) => _desc = descriptor;

    /// <summary>The null reference (the kernel's 0 netmem_ref).</summary>
    public static NetMemRef Null => default;

    /// <summary>Whether this is <see cref="Null"/>.</summary>
    public bool IsNull
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _desc == null;
    }

    /// <summary>The descriptor itself.</summary>
    public NetMem* Descriptor
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _desc;
    }

    /// <summary>The descriptor as a reference, for field access.</summary>
    public ref NetMem Value
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref *_desc;
    }

    /// <summary>Base address of the region that holds the page.</summary>
    public nint RegionBase
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (nint)((nuint)_desc & ~(((nuint)1 << _desc->RegionShift) - 1));
    }

    /// <summary>The kernel's <c>page_address</c>/<c>netmem_address</c>: address of the first byte of the page or run.</summary>
    public byte* Address
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            nuint regionBase = (nuint)_desc & ~(((nuint)1 << _desc->RegionShift) - 1);
            nuint index = ((nuint)_desc - regionBase) / NetMem.Size;
            return (byte*)(regionBase + (index << PageConstants.PageShift));
        }
    }

    /// <summary>Index of the page within its region.</summary>
    public int Index => (int)(((nuint)_desc - (nuint)RegionBase) / NetMem.Size);

    /// <summary>Allocation order of the run.</summary>
    public int Order => _desc->Order;

    /// <summary>Size in bytes: <c>4096 &lt;&lt; Order</c>.</summary>
    public int Size
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => PageConstants.PageSize << _desc->Order;
    }

    /// <summary>The device address set by the pool's DMA mapper (the kernel's <c>page_pool_get_dma_addr</c>).</summary>
    public ulong DmaAddr => _desc->DmaAddr;

    /// <summary>The kernel's <c>netmem_is_pp</c>: whether pp_magic carries <see cref="PpSignature"/>.</summary>
    public bool IsPagePool
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (_desc->PpMagic & PpMagicMask) == PpSignature;
    }

    /// <summary>The provider's state of the page.</summary>
    public PageState State => (PageState)_desc->State;

    /// <summary>Which kind of provider handed the page out (recorded in <see cref="NetMem.Flags"/>).</summary>
    public MemoryProviderKind ProviderKind => (MemoryProviderKind)(_desc->Flags >> NetMem.ProviderShift);

    /// <summary>NUMA node of the page's region (the kernel's <c>netmem_nid</c>), or -1.</summary>
    public int Nid => _desc->Nid;

    /// <summary>The page's bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Span<byte> AsSpan() => new(Address, Size);

    /// <summary>
    /// The kernel's <c>virt_to_page</c> for any byte address: the descriptor of the page (the head of the run for
    /// an order-n page) that contains <paramref name="address"/>, in O(1), or <see cref="Null"/> when no live
    /// region holds it, or it lies in a region's descriptor table. Reads nothing outside a live region.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static NetMemRef FromAddress(void* address)
    {
        NetMem* d = RegionRegistry.Lookup((nuint)address);
        if (d == null)
            return default;
        byte state = d->State;
        if (state == (byte)PageState.Tail)
            return new NetMemRef(d + (d->PageIndex - (int)(d - (NetMem*)((nuint)d & ~(((nuint)1 << d->RegionShift) - 1)))));
        if (state == (byte)PageState.Header)
            return default;
        return new NetMemRef(d);
    }

    /// <summary><see cref="FromAddress(void*)"/> for an address held as an integer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static NetMemRef FromAddress(nint address) => FromAddress((void*)address);

    /// <summary>The kernel's <c>get_page</c>: takes one more page reference (<see cref="NetMem.RefCount"/>).</summary>
    /// <returns>The new reference count.</returns>
    /// <exception cref="InvalidOperationException">The page is null or not handed out.</exception>
    public int GetPage()
    {
        if (_desc == null || _desc->State != (byte)PageState.InUse)
            ThrowHelper.ThrowNotHandedOut(this);
        // Interlocked: any thread may take or drop page references concurrently.
        return Interlocked.Increment(ref _desc->RefCount);
    }

    /// <summary>
    /// The kernel's <c>put_page</c>: drops one page reference; the last one gives the page back to the provider
    /// that handed it out.
    /// </summary>
    /// <returns>True when that was the last reference and the page went back to its provider.</returns>
    /// <exception cref="InvalidOperationException">The page is null, not handed out, or has no reference left.</exception>
    public bool PutPage()
    {
        if (_desc == null || _desc->State != (byte)PageState.InUse)
            ThrowHelper.ThrowNotHandedOut(this);
        // Interlocked: page references are dropped from any thread; exactly one sees zero.
        int left = Interlocked.Decrement(ref _desc->RefCount);
        if (left > 0)
            return false;
        if (left < 0)
        {
            Interlocked.Increment(ref _desc->RefCount);
            ThrowHelper.ThrowRefUnderflow(this);
        }
        PageProvider.FreeToOwner(this);
        return true;
    }

    /// <inheritdoc />
    public bool Equals(NetMemRef other) => _desc == other._desc;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is NetMemRef other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => ((nint)_desc).GetHashCode();

    /// <summary>Identity equality.</summary>
    public static bool operator ==(NetMemRef left, NetMemRef right) => left._desc == right._desc;

    /// <summary>Identity inequality.</summary>
    public static bool operator !=(NetMemRef left, NetMemRef right) => left._desc != right._desc;

    /// <inheritdoc />
    public override string ToString() => IsNull ? "NetMemRef(null)" : $"NetMemRef(0x{(nint)Address:x}, order {Order})";
}
