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

    /// <summary>
    /// A bit of pp_magic outside <see cref="PpMagicMask"/>: <see cref="GetPage"/> sets it on a page-pool page before
    /// it takes the reference, so the pool's fast recycle paths, which compare pp_magic exactly, see that someone else
    /// may hold the page without reading <see cref="NetMem.RefCount"/> on every put. The pool's checked path clears
    /// it when it recycles the page with no page reference left.
    /// </summary>
    internal const ulong PpPageRefsTaken = 0x2UL;

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
    /// region holds it, or it lies in a region's descriptor table. Reads nothing outside a region's memory, which
    /// stays mapped after the region's end (see <see cref="PageRegion"/>): racing a Dispose of the region it
    /// returns <see cref="Null"/> or a reference that every check refuses once the region is gone.
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
    /// <remarks>
    /// On a page-pool page it first sets bit 1 of <see cref="NetMem.PpMagic"/> (outside <see cref="PpMagicMask"/>),
    /// so the page's next put takes the pool's checked path, which reads the count; the pool clears the bit when it
    /// recycles the page with no page reference left.
    /// </remarks>
    /// <returns>The new reference count.</returns>
    /// <exception cref="InvalidOperationException">The page is null, not handed out, or its last reference is gone.</exception>
    public int GetPage()
    {
        if (_desc == null || _desc->State != (byte)PageState.InUse)
            ThrowHelper.ThrowNotHandedOut(this);
        // A page pool's page: marked before the reference exists, so a pool that sees the count above 1 sees the
        // mark too (see PpPageRefsTaken). Interlocked: the pool writes pp_magic on its own (releasing the page clears
        // it); an OR never brings the signature back to a page the pool has let go.
        if (IsPagePool)
            Interlocked.Or(ref _desc->PpMagic, PpPageRefsTaken);
        // Volatile: the starting value of the compare-exchange loop; a stale one only costs a retry.
        int count = Volatile.Read(ref _desc->RefCount);
        while (true)
        {
            // A count at zero means another thread dropped the last reference and the page is on its way back to
            // its provider: taking one now would revive a free page (the kernel's get_page_unless_zero refuses too).
            if (count <= 0)
                ThrowHelper.ThrowNotHandedOut(this);
            // Interlocked: any thread may take or drop page references concurrently.
            int seen = Interlocked.CompareExchange(ref _desc->RefCount, count + 1, count);
            if (seen == count)
                return count + 1;
            count = seen;
        }
    }

    /// <summary>
    /// The kernel's <c>put_page</c>: drops one page reference; the last one gives the page back to the provider
    /// that handed it out.
    /// </summary>
    /// <remarks>
    /// The last reference of a page that carries <see cref="PpSignature"/> is its page pool's: dropping it here would
    /// give the page to the provider while the pool still counts it (and may still cut fragments from it), so it is
    /// refused and nothing changes; give such a page back with <c>PagePool.PutPage</c> (the kernel reports a pool
    /// page reaching the page allocator as a bad page). A reference taken with <see cref="GetPage"/> on a pool page
    /// is dropped as on any page.
    /// </remarks>
    /// <returns>True when that was the last reference and the page went back to its provider.</returns>
    /// <exception cref="InvalidOperationException">
    /// The page is null, not handed out, has no reference left, or only its page pool's reference is left.
    /// </exception>
    public bool PutPage()
    {
        if (_desc == null || _desc->State != (byte)PageState.InUse)
            ThrowHelper.ThrowNotHandedOut(this);
        // Volatile: the count is read before pp_magic, so a pool that cleared pp_magic and then dropped its own
        // reference (ReturnPage) is seen with pp_magic already cleared.
        int count = Volatile.Read(ref _desc->RefCount);
        while (true)
        {
            if (count <= 0)
                ThrowHelper.ThrowRefUnderflow(this);
            if (count == 1 && IsPagePool)
                ThrowHelper.ThrowPoolReference(this);
            // Interlocked: page references are dropped from any thread; exactly one takes the count to zero.
            int seen = Interlocked.CompareExchange(ref _desc->RefCount, count - 1, count);
            if (seen == count)
                break;
            count = seen;
        }
        if (count > 1)
            return false;
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
