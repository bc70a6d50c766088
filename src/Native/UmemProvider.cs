using System.Numerics;
using System.Runtime.CompilerServices;

namespace UnmanagedPool.Native;

/// <summary>
/// A memory provider over one contiguous area cut into 4 KiB chunks: the AF_XDP UMEM (the kernel's
/// <c>xdp_umem</c>), which the kernel, and with a zero-copy driver the NIC, writes frames into. Every chunk is a
/// whole frame: its <see cref="NetMem"/> descriptor lives in a table before the area, never inside a chunk, so
/// <see cref="NetMemRef.FromAddress(void*)"/> finds it in O(1) and <see cref="FromOffset"/> finds it from a ring
/// descriptor's address. A chunk handed out carries <see cref="NetMem.DmaAddr"/> = its offset in the area (the
/// address the kernel's rings speak), and <see cref="MemoryProviderKind.Umem"/> in its flags.
/// </summary>
/// <remarks>
/// Several pools (one per queue, the shared-UMEM mode of AF_XDP) may draw from one provider: takes and gives are
/// under one lock, paid once per bulk on the pools' slow paths. A pool over it never holds more than
/// <see cref="ChunkCount"/> chunks; when they are all out, <see cref="AllocBulk"/> hands out fewer than asked and
/// counts <see cref="FailedAllocations"/>, as <see cref="PageProvider"/> does. The area stays mapped and
/// registered while a chunk is out, a pool is bound or a user (an AF_XDP socket that registered it with the
/// kernel, see <see cref="AddUser"/>) holds it, whatever the order of <see cref="Dispose"/>.
/// </remarks>
public sealed unsafe class UmemProvider : IMemoryProvider, IDisposable
{
    /// <summary>Bytes per chunk (one page; the AF_XDP chunk size in aligned mode).</summary>
    public const int ChunkSize = PageConstants.PageSize;

    /// <summary>Default area size: 16 MiB (4,032 chunks after the descriptor table's share).</summary>
    public const long DefaultSize = 16L << 20;

    private readonly Lock _lock = new();
    private readonly PageRegion _region;
    private readonly int _firstPage;   // index in the region of chunk 0
    private readonly int[] _free;      // stack of free chunk indexes
    private int _freeCount;            // under _lock
    private int _bindings;             // pools bound (Init without Destroy): under _lock
    private int _users;                // AddUser without RemoveUser: under _lock
    private bool _disposed;            // under _lock
    private bool _released;            // the region has been freed: under _lock
    private long _failedAllocations;   // under _lock; read with Volatile

    /// <summary>Maps an area of at least <paramref name="size"/> bytes and cuts it into chunks.</summary>
    /// <param name="size">
    /// Bytes to map, descriptor table included: rounded up to a power of two from 64 KiB to 1 GiB. The table takes
    /// 1/64 of it, so <see cref="ChunkCount"/> is <c>size / 4096 * 63 / 64</c>.
    /// </param>
    /// <param name="hugePages">
    /// Ask for huge pages: explicit ones (<c>MAP_HUGETLB</c>) where the system has enough free of its default size
    /// (<see cref="HugeTlbBacked"/>), transparent huge page advice otherwise (<see cref="HugePagesAdvised"/>).
    /// </param>
    /// <param name="lockMemory">mlock the area (the kernel pins a registered UMEM anyway).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is not in 1..1 GiB.</exception>
    /// <exception cref="OutOfMemoryException">The area could not be allocated.</exception>
    public UmemProvider(long size = DefaultSize, bool hugePages = true, bool lockMemory = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(size, 1L << PageConstants.MaxRegionShift);
        int shift = Math.Max(PageConstants.MinRegionShift, BitOperations.Log2(BitOperations.RoundUpToPowerOf2((ulong)size)));
        _region = new PageRegion(shift, -1, hugePages, lockMemory, hugeTlb: hugePages);
        _firstPage = _region.HeaderPages;
        ChunkCount = _region.PageCount - _firstPage;
        _free = new int[ChunkCount];
        NetMem* table = _region.Descriptors;
        for (int c = 0; c < ChunkCount; c++)
        {
            NetMem* d = table + _firstPage + c;
            d->Flags = (ulong)MemoryProviderKind.Umem << NetMem.ProviderShift;
            d->State = (byte)PageState.Free;
            d->Order = 0;
            // Pushed so that the lowest chunk is handed out first.
            _free[c] = ChunkCount - 1 - c;
        }
        _freeCount = ChunkCount;
        _region.OwnerState = this;
    }

    /// <summary>Chunks of the UMEM: <see cref="MemoryProviderKind.Umem"/>.</summary>
    public MemoryProviderKind Kind => MemoryProviderKind.Umem;

    /// <summary>Address of chunk 0: the start of the area to register with the kernel (page aligned).</summary>
    public nint Area => (nint)_region.PageAddress(_firstPage);

    /// <summary>Bytes of the area to register: <see cref="ChunkCount"/> × <see cref="ChunkSize"/>.</summary>
    public long AreaSize => (long)ChunkCount * ChunkSize;

    /// <summary>Chunks in the area.</summary>
    public int ChunkCount { get; }

    /// <summary>Chunks handed out and not yet given back.</summary>
    public int ChunksInUse { get { lock (_lock) return ChunkCount - _freeCount; } }

    /// <summary>Takes that could not be served in full because every chunk was out.</summary>
    public long FailedAllocations => Volatile.Read(ref _failedAllocations); // Volatile: counted under the lock by takers on any thread

    /// <summary>Whether the area is mapped on explicit huge pages (<c>MAP_HUGETLB</c>; false where the system has none free).</summary>
    public bool HugeTlbBacked => _region.HugeTlb;

    /// <summary>errno of the <c>MAP_HUGETLB</c> mapping when it was asked for and refused (ENOMEM: no free huge pages), else 0.</summary>
    public int HugeTlbError => _region.HugeTlbError;

    /// <summary>Whether transparent huge pages were advised for the area (when it is not on explicit huge pages).</summary>
    public bool HugePagesAdvised => _region.HugePagesAdvised;

    /// <summary>Whether the area has been unregistered and freed (after <see cref="Dispose"/>, once nothing holds it).</summary>
    public bool IsReleased { get { lock (_lock) return _released; } }

    /// <summary>The chunk's offset in the area: what the AF_XDP rings carry for it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong OffsetOf(NetMemRef page) => (ulong)((nint)page.Address - Area);

    /// <summary>
    /// The chunk that holds byte <paramref name="offset"/> of the area (a ring descriptor's address, headroom
    /// included), in O(1); <see cref="NetMemRef.Null"/> when the offset lies outside the area.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NetMemRef FromOffset(ulong offset)
    {
        ulong chunk = offset >> PageConstants.PageShift;
        if (chunk >= (ulong)ChunkCount)
            return default;
        return new NetMemRef(_region.Descriptors + _firstPage + (int)chunk);
    }

    /// <summary>Refuses pools it cannot serve: order 0 only, and the pool must not map pages (the chunk's offset is its address).</summary>
    /// <exception cref="ArgumentException">The pool's order is not 0, or it asks for DMA mapping.</exception>
    /// <exception cref="ObjectDisposedException">The provider has been disposed.</exception>
    public void Init(in MemoryProviderBinding pool)
    {
        if (pool.Order != 0)
            throw new ArgumentException($"A UMEM pool hands out single {ChunkSize}-byte chunks: order {pool.Order} is not supported.", "Order");
        if (pool.DmaMap)
            throw new ArgumentException("A UMEM pool takes its chunks' addresses from the UMEM (DmaAddr = offset): DmaMap is not supported.", "Flags");
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _bindings++;
        }
    }

    /// <summary>A pool bound by <see cref="Init"/> is freed: the area may go once nothing else holds it.</summary>
    public void Destroy(in MemoryProviderBinding pool)
    {
        lock (_lock)
        {
            if (_bindings > 0)
                _bindings--;
            ReleaseIfUnusedLocked();
        }
    }

    /// <summary>
    /// Fills <paramref name="pages"/> with free chunks (lowest offsets first), each with <see cref="NetMem.RefCount"/>
    /// 1, zeroed pool fields and <see cref="NetMem.DmaAddr"/> = its offset.
    /// </summary>
    /// <returns>How many were taken: fewer than asked when the area is exhausted.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="order"/> is not 0.</exception>
    /// <exception cref="ObjectDisposedException">The provider has been disposed.</exception>
    public int AllocBulk(Span<NetMemRef> pages, int order = 0, int nid = -1)
    {
        if (order != 0)
            throw new ArgumentOutOfRangeException(nameof(order), order, "A UMEM hands out order-0 chunks only.");
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            int n = Math.Min(pages.Length, _freeCount);
            NetMem* table = _region.Descriptors + _firstPage;
            for (int i = 0; i < n; i++)
            {
                int chunk = _free[--_freeCount];
                NetMem* d = table + chunk;
                d->State = (byte)PageState.InUse;
                d->RefCount = 1;
                d->ClearPoolFields();
                d->DmaAddr = (ulong)chunk << PageConstants.PageShift;
                pages[i] = new NetMemRef(d);
            }
            if (n < pages.Length)
                _failedAllocations++;
            return n;
        }
    }

    /// <summary>Always true: the pool's page reference is dropped and the last one gives the chunk back here.</summary>
    public bool Release(NetMemRef page) => true;

    /// <summary>
    /// Keeps the area mapped and registered for a user outside any pool (an AF_XDP socket that registered it with
    /// the kernel); undone by <see cref="RemoveUser"/>.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The provider has been disposed.</exception>
    public void AddUser()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _users++;
        }
    }

    /// <summary>Undoes one <see cref="AddUser"/>; the area goes when nothing else holds it after <see cref="Dispose"/>.</summary>
    public void RemoveUser()
    {
        lock (_lock)
        {
            if (_users > 0)
                _users--;
            ReleaseIfUnusedLocked();
        }
    }

    /// <summary>Gives one chunk back (the last <see cref="NetMemRef.PutPage"/> of a chunk comes here).</summary>
    /// <exception cref="InvalidOperationException">The page is not a chunk of this area handed out and not yet given back.</exception>
    internal void Give(NetMemRef page)
    {
        lock (_lock)
        {
            NetMem* table = _region.Descriptors + _firstPage;
            long chunk = page.Descriptor - table;
            if ((ulong)chunk >= (ulong)ChunkCount)
                ThrowHelper.ThrowForeignPage((nint)page.Address, "is not a chunk of this UMEM");
            NetMem* d = page.Descriptor;
            if (d->State != (byte)PageState.InUse)
                ThrowHelper.ThrowForeignPage((nint)page.Address, "is not handed out (double give)");
            d->State = (byte)PageState.Free;
            d->RefCount = 0;
            d->ClearPoolFields();
            _free[_freeCount++] = (int)chunk;
            ReleaseIfUnusedLocked();
        }
    }

    /// <summary>
    /// No chunk can be taken afterwards. The area is unregistered and freed now if no chunk is out, no pool is
    /// bound and no user holds it; otherwise when the last of them lets go.
    /// </summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            ReleaseIfUnusedLocked();
        }
    }

    private void ReleaseIfUnusedLocked()
    {
        if (!_disposed || _released || _freeCount != ChunkCount || _bindings != 0 || _users != 0)
            return;
        _released = true;
        _region.OwnerState = null;
        _region.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => $"UmemProvider 0x{Area:x} {AreaSize >> 10} KiB, {ChunkCount} chunks";
}
