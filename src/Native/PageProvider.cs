using System.Runtime.CompilerServices;

namespace UnmanagedPool.Native;

/// <summary>
/// Hands out pages and order-n runs from <see cref="PageRegion"/>s and takes them back: the page allocator under
/// a page pool (the kernel's <c>alloc_pages_bulk</c> and <c>put_page</c> to the buddy allocator). Thread-safe
/// under one lock: it is the slow path, paid once per bulk of pages.
/// </summary>
/// <remarks>
/// Each region serves one order at a time, cut into naturally aligned blocks of 2^order pages after its
/// descriptor table. A region whose blocks are all free goes back to the OS, except that one empty region is
/// kept cached to absorb an alloc/free cycle at the boundary. Out of memory (or an injected fault, or
/// <see cref="MemoryLimit"/>) yields <see cref="NetMemRef.Null"/>, never an exception.
/// </remarks>
public sealed unsafe class PageProvider : IMemoryProvider, IDisposable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<(int Order, int Nid), List<Slab>> _partial = new();
    private readonly List<Slab> _all = new();
    private Slab? _cachedEmpty;
    private bool _disposed;
    private long _pagesInUse;
    private long _bytesReserved;
    private long _regionsCreated;
    private long _regionsFreed;
    private long _failedAllocations;
    private long _injectedFailures;

    /// <summary>Creates a provider.</summary>
    /// <param name="regionShift">log2 of the size of the regions it creates (16..30; default 21, 2 MiB).</param>
    /// <param name="hugePages">Advise transparent huge pages for each region.</param>
    /// <param name="lockMemory">mlock each region.</param>
    /// <param name="memoryLimit">Most bytes of regions held at once; 0 for no limit.</param>
    public PageProvider(int regionShift = PageConstants.DefaultRegionShift, bool hugePages = true, bool lockMemory = false, long memoryLimit = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(regionShift, PageConstants.MinRegionShift);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(regionShift, PageConstants.MaxRegionShift);
        ArgumentOutOfRangeException.ThrowIfNegative(memoryLimit);
        RegionShift = regionShift;
        HugePages = hugePages;
        LockMemory = lockMemory;
        MemoryLimit = memoryLimit;
    }

    /// <summary>log2 of the default region size.</summary>
    public int RegionShift { get; }

    /// <summary>Whether regions are advised for transparent huge pages.</summary>
    public bool HugePages { get; }

    /// <summary>Whether regions are locked in RAM.</summary>
    public bool LockMemory { get; }

    /// <summary>Most bytes of regions the provider holds at once; 0 for no limit. Can be changed at any time.</summary>
    public long MemoryLimit { get; set; }

    /// <summary>Optional fault injector consulted for every run asked for.</summary>
    public IAllocFaultInjector? FaultInjector { get; set; }

    /// <summary>Pages (4 KiB units) handed out and not yet given back.</summary>
    public long PagesInUse => Volatile.Read(ref _pagesInUse);

    /// <summary>Bytes of regions currently held.</summary>
    public long BytesReserved => Volatile.Read(ref _bytesReserved);

    /// <summary>Regions currently held (the cached empty one included).</summary>
    public int RegionCount { get { lock (_lock) return _all.Count; } }

    /// <summary>Regions created since construction.</summary>
    public long RegionsCreated => Volatile.Read(ref _regionsCreated);

    /// <summary>Regions given back to the OS since construction.</summary>
    public long RegionsFreed => Volatile.Read(ref _regionsFreed);

    /// <summary>Runs asked for that could not be handed out (no memory, limit reached, or injected).</summary>
    public long FailedAllocations => Volatile.Read(ref _failedAllocations);

    /// <summary>Of <see cref="FailedAllocations"/>, those caused by <see cref="FaultInjector"/>.</summary>
    public long InjectedFailures => Volatile.Read(ref _injectedFailures);

    /// <summary>Pages of ordinary regions: <see cref="MemoryProviderKind.Region"/>.</summary>
    public MemoryProviderKind Kind => MemoryProviderKind.Region;

    /// <summary>Any pool may bind: the provider serves every order and node.</summary>
    void IMemoryProvider.Init(in MemoryProviderBinding pool)
    {
    }

    /// <inheritdoc cref="TakeBulk"/>
    int IMemoryProvider.AllocBulk(Span<NetMemRef> pages, int order, int nid) => TakeBulk(pages, order, nid);

    /// <summary>Always true: the pool's page reference is dropped and the last one gives the page back here.</summary>
    bool IMemoryProvider.Release(NetMemRef page) => true;

    /// <summary>Nothing to undo: a pool that owns its provider disposes of it itself.</summary>
    void IMemoryProvider.Destroy(in MemoryProviderBinding pool)
    {
    }

    /// <summary>Takes one run of 2^<paramref name="order"/> pages, or <see cref="NetMemRef.Null"/> when none can be had.</summary>
    /// <param name="order">0..10.</param>
    /// <param name="nid">NUMA node to place a new region on, or -1.</param>
    public NetMemRef Take(int order = 0, int nid = -1)
    {
        NetMemRef page = default;
        TakeBulk(new Span<NetMemRef>(ref page), order, nid);
        return page;
    }

    /// <summary>
    /// Fills <paramref name="pages"/> with runs of 2^<paramref name="order"/> pages (the kernel's
    /// <c>alloc_pages_bulk</c>). Each run comes with <see cref="NetMem.RefCount"/> 1 and zeroed pool fields.
    /// </summary>
    /// <returns>How many were taken: fewer than asked when memory ran out.</returns>
    /// <exception cref="ObjectDisposedException">The provider has been disposed.</exception>
    public int TakeBulk(Span<NetMemRef> pages, int order = 0, int nid = -1)
    {
        ValidateOrder(order);
        if (nid is < -1 or > 63)
            throw new ArgumentOutOfRangeException(nameof(nid), nid, "A NUMA node is -1 or 0..63.");
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            int taken = 0;
            IAllocFaultInjector? injector = FaultInjector;
            while (taken < pages.Length)
            {
                if (injector != null && injector.ShouldFail(order))
                {
                    _injectedFailures++;
                    _failedAllocations++;
                    break;
                }
                Slab? slab = FindSlab(order, nid);
                if (slab == null)
                {
                    _failedAllocations++;
                    break;
                }
                // At least one block leaves the slab below: it is no longer empty, whatever stops the loop.
                if (_cachedEmpty == slab)
                    _cachedEmpty = null;
                while (taken < pages.Length && slab.FreeCount > 0)
                {
                    int block = slab.Free[--slab.FreeCount];
                    NetMem* d = slab.Region.Descriptors + block;
                    d->State = (byte)PageState.InUse;
                    d->RefCount = 1;
                    d->ClearPoolFields();
                    d->Flags = 0;
                    pages[taken++] = new NetMemRef(d);
                    if (injector != null && taken < pages.Length && slab.FreeCount > 0 && injector.ShouldFail(order))
                    {
                        _injectedFailures++;
                        _failedAllocations++;
                        goto done;
                    }
                }
                if (slab.FreeCount == 0)
                    RemoveFromPartial(slab);
            }
        done:
            _pagesInUse += (long)taken << order;
            return taken;
        }
    }

    /// <summary>Gives one run back.</summary>
    /// <exception cref="InvalidOperationException">
    /// The page is null, was not handed out by this provider, or is already free. The provider is unchanged.
    /// </exception>
    public void Give(NetMemRef page) => GiveBulk(new ReadOnlySpan<NetMemRef>(in page));

    /// <summary>Gives runs back. All are checked before any is taken back.</summary>
    /// <exception cref="InvalidOperationException">One of them is invalid (see <see cref="Give"/>); none was taken back.</exception>
    public void GiveBulk(ReadOnlySpan<NetMemRef> pages)
    {
        lock (_lock)
        {
            for (int i = 0; i < pages.Length; i++)
            {
                Validate(pages[i]);
                for (int j = 0; j < i; j++)
                    if (pages[j] == pages[i])
                        ThrowHelper.ThrowForeignPage((nint)pages[i].Address, "appears twice in one give");
            }
            foreach (NetMemRef page in pages)
                GiveLocked(page);
        }
    }

    /// <summary>Gives back to the OS every empty region, the cached one included.</summary>
    /// <returns>Bytes given back.</returns>
    public long Trim()
    {
        lock (_lock)
        {
            long freed = 0;
            for (int i = _all.Count - 1; i >= 0; i--)
            {
                Slab s = _all[i];
                if (s.FreeCount == s.BlockCount)
                {
                    freed += (long)s.Region.Size;
                    FreeSlab(s);
                }
            }
            _cachedEmpty = null;
            return freed;
        }
    }

    /// <summary>
    /// Frees every region whose pages are all back; regions with pages still out are freed when their last page
    /// comes back. No page can be taken afterwards.
    /// </summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
                return;
            _disposed = true;
        }
        Trim();
    }

    /// <summary>Gives a run back to whichever provider handed it out (used by <see cref="NetMemRef.PutPage"/>).</summary>
    internal static void FreeToOwner(NetMemRef page)
    {
        if (!RegionRegistry.IsDescriptor(page.Descriptor, out nuint regionBase, out _))
            ThrowHelper.ThrowForeignPage((nint)page.Descriptor, "is not a descriptor of a live region");
        switch (RegionRegistry.Find((nint)regionBase)?.OwnerState)
        {
            case Slab slab:
                slab.Owner.Give(page);
                break;
            case UmemProvider umem:
                umem.Give(page);
                break;
            default:
                throw new InvalidOperationException($"Page 0x{(nint)page.Address:x} belongs to no provider.");
        }
    }

    /// <summary>The provider that handed out <paramref name="page"/>, or null.</summary>
    public static PageProvider? OwnerOf(NetMemRef page)
    {
        if (page.IsNull || !RegionRegistry.IsDescriptor(page.Descriptor, out nuint regionBase, out _))
            return null;
        return (RegionRegistry.Find((nint)regionBase)?.OwnerState as Slab)?.Owner;
    }

    private void Validate(NetMemRef page)
    {
        if (page.IsNull)
            throw new InvalidOperationException("Cannot give back a null page (address 0x0).");
        if (!RegionRegistry.IsDescriptor(page.Descriptor, out nuint regionBase, out _))
            ThrowHelper.ThrowForeignPage((nint)page.Descriptor, "is not a descriptor of any live region");
        PageRegion? region = RegionRegistry.Find((nint)regionBase);
        if (region?.OwnerState is not Slab slab || slab.Owner != this)
            ThrowHelper.ThrowForeignPage((nint)page.Address, "was not handed out by this provider");
        NetMem* d = page.Descriptor;
        if (d->State == (byte)PageState.Free)
            ThrowHelper.ThrowForeignPage((nint)page.Address, "is already free (double give)");
        if (d->State != (byte)PageState.InUse)
            ThrowHelper.ThrowForeignPage((nint)page.Address, $"is not the head of a handed-out run (state {(PageState)d->State})");
    }

    private void GiveLocked(NetMemRef page)
    {
        NetMem* d = page.Descriptor;
        Slab slab = (Slab)RegionRegistry.Find(page.RegionBase)!.OwnerState!;
        d->State = (byte)PageState.Free;
        d->RefCount = 0;
        d->ClearPoolFields();
        slab.Free[slab.FreeCount++] = (int)(d - slab.Region.Descriptors);
        _pagesInUse -= 1L << slab.Order;
        if (slab.FreeCount == 1)
            AddToPartial(slab);
        if (slab.FreeCount == slab.BlockCount)
        {
            if (_disposed || (_cachedEmpty != null && _cachedEmpty != slab))
                FreeSlab(slab);
            else
                _cachedEmpty = slab;
        }
    }

    private Slab? FindSlab(int order, int nid)
    {
        if (_partial.TryGetValue((order, nid), out var list) && list.Count > 0)
        {
            // Prefer a region that is not the cached empty one, so that one stays empty and returnable.
            for (int i = list.Count - 1; i >= 0; i--)
                if (list[i] != _cachedEmpty)
                    return list[i];
            return list[^1];
        }
        if (_cachedEmpty != null && _cachedEmpty.Nid == nid && _cachedEmpty.Order != order)
        {
            // Re-cut the cached empty region for this order rather than hold two regions.
            Slab old = _cachedEmpty;
            FreeSlab(old);
            _cachedEmpty = null;
        }
        return NewSlab(order, nid);
    }

    private Slab? NewSlab(int order, int nid)
    {
        // At least 8 blocks per region for high orders, so the table overhead stays small (arbitrary).
        int shift = Math.Max(RegionShift, Math.Min(PageConstants.MaxRegionShift, PageConstants.PageShift + order + 3));
        long size = 1L << shift;
        if (MemoryLimit > 0 && _bytesReserved + size > MemoryLimit)
            return null;
        PageRegion region;
        try
        {
            region = new PageRegion(shift, nid, HugePages, LockMemory);
        }
        catch (OutOfMemoryException)
        {
            return null;
        }
        var slab = new Slab(this, region, order, nid);
        if (slab.BlockCount == 0)
        {
            region.Dispose();
            return null;
        }
        region.OwnerState = slab;
        _all.Add(slab);
        _bytesReserved += size;
        _regionsCreated++;
        AddToPartial(slab);
        return slab;
    }

    private void FreeSlab(Slab slab)
    {
        RemoveFromPartial(slab);
        _all.Remove(slab);
        if (_cachedEmpty == slab)
            _cachedEmpty = null;
        _bytesReserved -= (long)slab.Region.Size;
        _regionsFreed++;
        slab.Region.OwnerState = null;
        slab.Region.Dispose();
    }

    private void AddToPartial(Slab slab)
    {
        if (slab.ListIndex >= 0)
            return;
        if (!_partial.TryGetValue((slab.Order, slab.Nid), out var list))
            _partial[(slab.Order, slab.Nid)] = list = new List<Slab>();
        slab.ListIndex = list.Count;
        list.Add(slab);
    }

    private void RemoveFromPartial(Slab slab)
    {
        if (slab.ListIndex < 0)
            return;
        var list = _partial[(slab.Order, slab.Nid)];
        int last = list.Count - 1;
        Slab moved = list[last];
        list[slab.ListIndex] = moved;
        moved.ListIndex = slab.ListIndex;
        list.RemoveAt(last);
        slab.ListIndex = -1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ValidateOrder(int order)
    {
        if ((uint)order > PageConstants.MaxOrder)
            throw new ArgumentOutOfRangeException(nameof(order), order, $"Order must be 0..{PageConstants.MaxOrder}.");
    }

    /// <summary>A region cut for one order: its free blocks as a stack of head page indexes.</summary>
    private sealed class Slab
    {
        public Slab(PageProvider owner, PageRegion region, int order, int nid)
        {
            Owner = owner;
            Region = region;
            Order = order;
            Nid = nid;
            int blockPages = 1 << order;
            int first = (region.HeaderPages + blockPages - 1) & ~(blockPages - 1);
            BlockCount = first >= region.PageCount ? 0 : (region.PageCount - first) >> order;
            Free = new int[BlockCount];
            NetMem* table = region.Descriptors;
            // Blocks are pushed so that the lowest address is handed out first.
            for (int b = 0; b < BlockCount; b++)
            {
                int head = first + ((BlockCount - 1 - b) << order);
                Free[b] = head;
            }
            FreeCount = BlockCount;
            for (int b = 0; b < BlockCount; b++)
            {
                int head = first + (b << order);
                table[head].Order = (byte)order;
                table[head].State = (byte)PageState.Free;
                table[head].PageIndex = head;
                for (int t = 1; t < blockPages; t++)
                {
                    table[head + t].State = (byte)PageState.Tail;
                    table[head + t].PageIndex = head;
                    table[head + t].Order = (byte)order;
                }
            }
            // Pages past the last whole block (and the alignment gap after the table) are never handed out.
            for (int p = region.HeaderPages; p < first; p++)
                table[p].State = (byte)PageState.Header;
            for (int p = first + (BlockCount << order); p < region.PageCount; p++)
                table[p].State = (byte)PageState.Header;
        }

        public PageProvider Owner { get; }
        public PageRegion Region { get; }
        public int Order { get; }
        public int Nid { get; }
        public int BlockCount { get; }
        public int[] Free { get; }
        public int FreeCount;
        public int ListIndex = -1;
    }
}
