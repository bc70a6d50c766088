using UnmanagedPool.Internal;
using UnmanagedPool.Native;

namespace UnmanagedPool;

// DMA mappings tracked by the pool, as the kernel does since 6.15 (pool->dma_mapped, an xarray whose index each
// page keeps in pp_magic's spare bits, PP_DMA_INDEX_MASK): every page the pool mapped is recorded, Dispose takes
// down the mapping of every page still mapped, those in flight included (page_pool_scrub), so a device never keeps
// a mapping to memory the pool no longer controls; a page that comes back after that is released without a second
// unmap (__page_pool_release_netmem_dma finds no entry).
//
// The index lives in the descriptor's spare word _pp_mapping_pad (NetMem.PpMappingPad, index + 1, 0 for none), not
// in pp_magic: the fast paths compare pp_magic and pp as one exact 16-byte word, which must stay a single compare.
// The table is touched on the slow paths only (map on a provider take, unmap on a release), under a lock.
public sealed unsafe partial class PagePool
{
    private readonly Lock _dmaLock = new();
    private nint[] _dmaSlots = [];      // descriptor per index, 0 when free; under _dmaLock
    private int[] _dmaFree = [];        // free indexes below _dmaUsed (a stack); under _dmaLock
    private int _dmaFreeCount;          // under _dmaLock
    private int _dmaUsed;               // indexes ever handed out: the table's high-water mark; under _dmaLock
    private int _dmaMappedCount;        // pages mapped now: written under _dmaLock, read by DmaMappedPages

    /// <summary>Pages of this pool whose DMA mapping is up now (0 when the pool does not map).</summary>
    public int DmaMappedPages => Volatile.Read(ref _dmaMappedCount); // Volatile: written under the lock on other threads

    /// <summary>Records that <paramref name="d"/> was just mapped (its <see cref="NetMem.DmaAddr"/> is set).</summary>
    private void TrackDma(NetMem* d)
    {
        lock (_dmaLock)
        {
            int index;
            if (_dmaFreeCount > 0)
            {
                index = _dmaFree[--_dmaFreeCount];
            }
            else
            {
                index = _dmaUsed++;
                if (index == _dmaSlots.Length)
                    GrowDmaTable();
            }
            _dmaSlots[index] = (nint)d;
            d->PpMappingPad = (ulong)index + 1;
            // Volatile: DmaMappedPages reads it without the lock.
            Volatile.Write(ref _dmaMappedCount, _dmaMappedCount + 1);
        }
    }

    /// <summary>
    /// At creation: room for every page the pool keeps (ring, alloc cache, put buffer) and as many again in flight,
    /// so that a pool in its steady state maps without growing the table (no managed allocation). Arbitrary.
    /// </summary>
    private void SizeDmaTable(int ringSize)
    {
        int size = 2 * (ringSize + AllocCacheSize + PutBufferSize);
        _dmaSlots = new nint[size];
        _dmaFree = new int[size];
    }

    /// <summary>Doubles the table (the free stack with it). Under <see cref="_dmaLock"/>; cold.</summary>
    private void GrowDmaTable()
    {
        int size = Math.Max(64, _dmaSlots.Length * 2);
        Array.Resize(ref _dmaSlots, size);
        Array.Resize(ref _dmaFree, size);
    }

    /// <summary>Removes <paramref name="d"/> from the table; false when it was not there (its mapping is already down).</summary>
    private bool UntrackDma(NetMem* d)
    {
        lock (_dmaLock)
        {
            ulong entry = d->PpMappingPad;
            d->PpMappingPad = 0;
            if (entry == 0 || entry > (ulong)_dmaUsed || _dmaSlots[(int)(entry - 1)] != (nint)d)
                return false;
            int index = (int)(entry - 1);
            _dmaSlots[index] = 0;
            _dmaFree[_dmaFreeCount++] = index;
            // Volatile: DmaMappedPages reads it without the lock.
            Volatile.Write(ref _dmaMappedCount, _dmaMappedCount - 1);
            return true;
        }
    }

    /// <summary>Whether <paramref name="d"/>'s mapping is still up (in the table).</summary>
    private bool IsDmaMapped(NetMem* d)
    {
        lock (_dmaLock)
        {
            ulong entry = d->PpMappingPad;
            return entry != 0 && entry <= (ulong)_dmaUsed && _dmaSlots[(int)(entry - 1)] == (nint)d;
        }
    }

    /// <summary>
    /// The kernel's <c>__page_pool_release_netmem_dma</c>: takes the page's mapping down unless Dispose already did.
    /// When the mapper's unmap throws, the page goes back into the table (its mapping is still up) and the exception
    /// goes on.
    /// </summary>
    private void UnmapTracked(NetMem* d)
    {
        if (!UntrackDma(d))
            return;
        try
        {
            _mapper.Unmap(d->DmaAddr, (nuint)new NetMemRef(d).Size, _dmaDir);
        }
        catch
        {
            TrackDma(d);
            throw;
        }
    }

    /// <summary>
    /// The mapping half of the kernel's <c>page_pool_scrub</c>, from <see cref="Dispose"/>: takes down the mapping of
    /// every page still mapped, in flight or not. Each page leaves the table before its unmap, so a release racing
    /// this one unmaps it at most once; an unmap that throws puts its page back and the first exception is kept in
    /// <paramref name="first"/>.
    /// </summary>
    private void UnmapAllTracked(ref FirstException first)
    {
        if (!_dmaMap)
            return;
        nint[] pages;
        lock (_dmaLock)
        {
            if (_dmaMappedCount == 0)
                return;
            pages = new nint[_dmaMappedCount];
            int n = 0;
            for (int i = 0; i < _dmaUsed; i++)
            {
                nint p = _dmaSlots[i];
                if (p == 0)
                    continue;
                pages[n++] = p;
                _dmaSlots[i] = 0;
                _dmaFree[_dmaFreeCount++] = i;
                ((NetMem*)p)->PpMappingPad = 0;
            }
            // Volatile: DmaMappedPages reads it without the lock.
            Volatile.Write(ref _dmaMappedCount, 0);
        }
        foreach (nint p in pages)
        {
            NetMem* d = (NetMem*)p;
            try
            {
                _mapper.Unmap(d->DmaAddr, (nuint)new NetMemRef(d).Size, _dmaDir);
            }
            catch (Exception e)
            {
                TrackDma(d);
                first.Keep(e);
            }
        }
    }
}
