using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Tracing;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using UnmanagedPool.Internal;
using UnmanagedPool.Native;

namespace UnmanagedPool;

// The provider slow path: NUMA waive, stealing from per-CPU caches, taking pages from the memory provider and
// setting them up, and the take bracket that keeps the pool alive while a take is set up.
public sealed unsafe partial class PagePool
{
    private int _takesUnderWay;         // provider takes being set up (their Holds not all counted): Interlocked

    /// <summary>
    /// After a refill of the alloc cache on a pool bound to a node: the first page of another node is released
    /// (waive), and the slow path will allocate on the right node; what the waive left unread goes back to the ring
    /// (or is released when the ring is full), so nothing is lost. The cache count is right before any release.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit] // the stack buffer is written before it is read
    private void WaiveForeignNode(int nid)
    {
        int n = CacheCount;
        for (int i = 0; i < n; i++)
        {
            if (((NetMem*)Cache[i])->Nid == nid)
                continue;
            _hot.Stats.Waive++;
            int back = _ring.EnqueueBurst(Cache[(i + 1)..n]);
            Span<nint> release = stackalloc nint[AllocCacheRefill];
            release[0] = Cache[i];
            Cache[(i + 1 + back)..n].CopyTo(release[1..]);
            release = release[..(n - i - back)];
            CacheCount = i;
            ReturnPages(release);
            return;
        }
    }

    /// <summary>
    /// Owner of <paramref name="items"/> only, after a refill into it from the ring: releases every page of another
    /// node than <paramref name="nid"/> (waive) and keeps the others. The count is right before any release.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit] // the stack buffer is written before it is read
    private void WaiveForeignNodes(int nid, Span<nint> items, ref int count, ref PoolCounters stats)
    {
        int n = count;
        Debug.Assert(n <= PerCpuCache.Capacity);
        Span<nint> waived = stackalloc nint[PerCpuCache.Capacity];
        int kept = 0, w = 0;
        for (int i = 0; i < n; i++)
        {
            nint p = items[i];
            if (((NetMem*)p)->Nid == nid)
                items[kept++] = p;
            else
                waived[w++] = p;
        }
        count = kept;
        stats.Waive += w;
        ReturnPages(waived[..w]);
    }

    /// <summary>
    /// Moves pages parked in per-CPU caches into <paramref name="batch"/>: the consumer's last resort when the
    /// ring is empty and the provider has nothing left. Not a routine refill: it would make the consumer fight
    /// the putting threads for their cache lines.
    /// </summary>
    private int StealFromPerCpuCaches(Span<nint> batch) => _perCpu.Steal(batch);

    /// <summary>
    /// The kernel's <c>__page_pool_alloc_pages_slow</c>: takes a bulk of pages (one for order &gt; 0) from the
    /// provider, sets them up for the pool, returns one of them and puts the others in <paramref name="cache"/>.
    /// <para>
    /// The pages are set up on the stack and reach the cache only when all are ready: an init callback or DMA
    /// mapper that calls back into the pool (a put, <see cref="Trim"/>, <see cref="Dispose"/>) sees a consistent
    /// cache, and each page is counted in Hold as soon as it is set up, so a Dispose from such a callback sees it
    /// in flight. A pool disposed meanwhile gets every page back and the allocation throws.
    /// </para>
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit] // the stack buffer is written before it is read
    private NetMemRef AllocPagesSlow<TCount>(ref PoolCounters stats, Span<nint> cache, TCount cacheCount)
        where TCount : struct, ICacheCount
    {
        int want = _order == 0 ? Math.Min(AllocCacheRefill, cache.Length - cacheCount.Value) : 1;
        if (want <= 0)
            want = 1;
        Span<NetMemRef> fresh = stackalloc NetMemRef[AllocCacheRefill];
        fresh = fresh[..want];
        int got = TakeFromProvider(fresh);
        if (got == 0)
            return default;
        // On the consumer thread no per-CPU section covers the setup: a callback that disposes the pool before the
        // first page is counted in Hold would otherwise see nothing in flight and free it under the bulk.
        BeginTake();
        try
        {
            return SetUpAndStash(fresh[..got], ref stats, cache, cacheCount);
        }
        finally
        {
            EndTake();
        }
    }

    /// <summary>
    /// The setup half of <see cref="AllocPagesSlow"/>, inside its take: sets up the pages taken from the provider,
    /// counts them in Hold, returns one and stashes the others.
    /// </summary>
    private NetMemRef SetUpAndStash<TCount>(Span<NetMemRef> fresh, ref PoolCounters stats, Span<nint> cache, TCount cacheCount)
        where TCount : struct, ICacheCount
    {
        int got = fresh.Length;
        int usable = 0;
        int next = 0;
        bool setUp = false;
        try
        {
            while (next < got)
            {
                NetMem* d = fresh[next++].Descriptor;
                if (!SetupPage(d))
                    continue;
                fresh[usable++] = new NetMemRef(d);
                stats.Hold++;
            }
            setUp = true;
        }
        finally
        {
            if (!setUp)
            {
                // A page whose setup threw (an init callback or DMA mapper) was given back by SetupPage; the pages
                // after it were never set up and go straight back to the provider; those before it are the pool's.
                for (; next < got; next++)
                    fresh[next].PutPage();
                if (usable > 0)
                {
                    CountSlow(ref stats);
                    TraceHold(fresh[..usable]);
                }
                StashSetUp(MemoryMarshal.Cast<NetMemRef, nint>(fresh[..usable]), cache, cacheCount);
            }
        }
        if (usable == 0)
            return default;
        CountSlow(ref stats);
        TraceHold(fresh[..usable]);

        // A callback above may have disposed the pool (on this thread or another).
        if (!IsAlive)
        {
            ReturnPages(MemoryMarshal.Cast<NetMemRef, nint>(fresh[..usable]));
            PoolThrowHelper.ThrowDisposed(Id);
        }
        NetMem* page = fresh[usable - 1].Descriptor;
        StashSetUp(MemoryMarshal.Cast<NetMemRef, nint>(fresh[..(usable - 1)]), cache, cacheCount);
        page->PpRefCount = 1;
        if (_debug)
            DebugOnAlloc(page);
        return new NetMemRef(page);
    }

    private void CountSlow(ref PoolCounters stats)
    {
        if (_order > 0)
            stats.SlowHighOrder++;
        else
            stats.Slow++;
    }

    /// <summary>
    /// Puts pages the slow path set up into <paramref name="cache"/> as far as it has room (a callback may have
    /// filled it meanwhile), the rest into the ring, and releases what the ring refuses; all are released when the
    /// pool has been disposed meanwhile.
    /// </summary>
    private void StashSetUp<TCount>(ReadOnlySpan<nint> pages, Span<nint> cache, TCount cacheCount)
        where TCount : struct, ICacheCount
    {
        // Dispose sets the state on another thread (or from a callback on this one).
        if (!IsAlive)
        {
            ReturnPages(pages);
            return;
        }
        int count = cacheCount.Value;
        int room = Math.Min(pages.Length, cache.Length - count);
        pages[..room].CopyTo(cache[count..]);
        cacheCount.Value = count + room;
        pages = pages[room..];
        if (pages.IsEmpty)
            return;
        int enq = _ring.EnqueueBurst(pages);
        ReturnPages(pages[enq..]);
    }

    private int TakeFromProvider(Span<NetMemRef> fresh)
    {
        int admitted = AdmitSlowPath(fresh.Length);
        if (admitted == 0)
            return 0;
        int got;
        try
        {
            got = _provider.AllocBulk(fresh[..admitted], _order, _nid);
        }
        catch (ObjectDisposedException)
        {
            got = 0;
        }
        if (got == 0)
            CountAllocFailed();
        return got;
    }

    /// <summary>Traces pages the pool has just taken from the provider and counted in Hold (when tracing is on).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void TraceHold(ReadOnlySpan<NetMemRef> pages)
    {
        var log = PagePoolEventSource.Log;
        if (log.IsEnabled())
            TraceHold(log, pages);
    }

    private void TraceHold(PagePoolEventSource log, ReadOnlySpan<NetMemRef> pages)
    {
        if (log.IsEnabled(EventLevel.Informational, PagePoolEventSource.Keywords.SlowPath))
            log.SlowPathRefill(Id, pages.Length, _order);
        if (log.IsEnabled(EventLevel.Verbose, PagePoolEventSource.Keywords.PageState))
        {
            // The kernel reports each page with the hold count it took: number the new pages up to the total.
            long hold = TotalHold() - pages.Length;
            foreach (NetMemRef page in pages)
                log.StateHold(Id, (ulong)page.Address, ++hold, page.Index);
        }
    }

    /// <summary>
    /// The kernel's <c>page_pool_set_pp_info</c> plus DMA mapping; false when mapping failed (page given back).
    /// When the mapper or the init callback throws, the page is given back too (unmapped if it was mapped) and the
    /// exception goes on: the page never became the pool's.
    /// </summary>
    private bool SetupPage(NetMem* d)
    {
        var page = new NetMemRef(d);
        bool mapped = false;
        try
        {
            if (_dmaMap)
            {
                if (!_mapper.Map(page.Address, (nuint)page.Size, _dmaDir, out ulong dma))
                {
                    page.PutPage();
                    return false;
                }
                d->DmaAddr = dma;
                TrackDma(d);
                mapped = true;
                if (_dmaSync)
                    _mapper.SyncForDevice(dma + (ulong)_offset, (nuint)_maxLen, _dmaDir);
            }
            d->PpMagic = NetMemRef.PpSignature;
            d->Pp = _pp;
            d->PpRefCount = 0;
            _initCallback?.Invoke(page, _initArg);
        }
        catch
        {
            try
            {
                if (mapped)
                    UnmapTracked(d);
            }
            finally
            {
                d->PpMagic = 0;
                d->Pp = 0;
                d->DmaAddr = 0;
                page.PutPage();
            }
            throw;
        }
        if (_debug)
            DebugOnHold(d);
        return true;
    }

    /// <summary>
    /// Opens a provider take whose pages are about to be set up: until <see cref="EndTake"/>, the pool is not freed
    /// (see <see cref="ReleaseAttempt"/>), since an init callback or DMA mapper may dispose it before the pages set
    /// up so far are counted in Hold.
    /// </summary>
    private void BeginTake() =>
        // Interlocked (a full fence before the caller's state check and setup): either the take sees the pool
        // closing, or a release attempt sees the take under way.
        Interlocked.Increment(ref _takesUnderWay);

    /// <summary>Closes a take opened by <see cref="BeginTake"/>, once every page it kept is counted in Hold.</summary>
    private void EndTake()
    {
        // Interlocked (a full fence after the take's Holds): a release attempt that reads 0 here sees them. And the
        // state read after it: a Dispose that saw this take under way left the complete drain undone, so the last
        // take to finish does it, and the pool is freed as soon as its pages come back rather than on the retry
        // timer's next tick.
        if (Interlocked.Decrement(ref _takesUnderWay) == 0 && IsDestroying)
            CompleteDrainQuietly();
    }
}
