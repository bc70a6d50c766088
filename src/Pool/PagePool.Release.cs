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

// Where a page's last reference goes: the checks, the unref, recycling (alloc cache, per-CPU cache, ring), flushing
// to the ring, and release of pages back to their provider.
public sealed unsafe partial class PagePool
{
    /// <summary>
    /// Validates that <paramref name="page"/> is this pool's and referenced; returns its descriptor. Every put
    /// starts here: the checks are the kernel's pp_magic/pp tests plus a reference-count underflow test.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal NetMem* CheckOwned(NetMemRef page)
    {
        // A freed pool may have given its regions back to the OS: never touch a descriptor then.
        if (_state == StateFreed)
            PoolThrowHelper.ThrowDisposed(Id);
        NetMem* d = page.Descriptor;
        if (d == null || (d->PpMagic & NetMemRef.PpMagicMask) != NetMemRef.PpSignature || d->Pp != _pp)
            PoolThrowHelper.ThrowNotOurs(page, _pp, Id);
        if (d->PpRefCount <= 0)
            PoolThrowHelper.ThrowDoublePut(page);
        if (_debug)
            DebugCheckFragCookies(d);
        return d;
    }

    /// <summary>The page that holds <paramref name="address"/>; throws when it lies in no live page of a region.</summary>
    internal static NetMemRef ResolveAddress(byte* address)
    {
        NetMemRef page = NetMemRef.FromAddress(address);
        if (page.IsNull)
            PoolThrowHelper.ThrowForeignAddress(address);
        return page;
    }

    /// <summary>
    /// The kernel's <c>page_pool_unref_and_test</c>: drops one reference; true when it was the last. The common
    /// single-owner case reads the count and writes zero without an atomic operation. The caller checked that the
    /// page is this pool's (<see cref="CheckOwned"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool UnrefAndTest(NetMem* d)
    {
        long count = d->PpRefCount;
        if (count == 1)
        {
            if (_debug)
                return UnrefLastChecked(d);
            // We hold the only reference: nobody else can touch the count now (a second put of the same page at
            // the same moment is a caller's bug that this plain store lets through; ClaimForHandOut catches it).
            d->PpRefCount = 0;
            return true;
        }
        return UnrefSlow(d, 1) == 0;
    }

    /// <summary>
    /// Debug mode: the single-owner put with an atomic operation, so that of two puts of one page at the same
    /// moment exactly one succeeds and the other throws as a double put, at the put that did it.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool UnrefLastChecked(NetMem* d)
    {
        RaceHooks.At(RaceHooks.DebugSingleRefPut);
        // Interlocked: another thread may be putting the same page right now (the caller's bug to report).
        if (Interlocked.CompareExchange(ref d->PpRefCount, 0, 1) == 1)
            return true;
        return UnrefSlow(d, 1) == 0;
    }

    /// <summary>
    /// The kernel's <c>page_pool_unref_netmem</c>: drops <paramref name="nr"/> references; when they were the last,
    /// the count goes back to 1 (the caller now holds the page alone, as one reference) and 0 is returned. A page
    /// whose count carries the pool's fragment bias always takes the checked path, which refuses to drop any of
    /// the bias.
    /// </summary>
    private long UnrefNetmem(NetMem* d, long nr)
    {
        long count = d->PpRefCount;
        if (count == nr && count <= FragBiasFloor)
        {
            // The caller holds every reference: nobody else can touch the count now.
            d->PpRefCount = 1;
            return 0;
        }
        long left = UnrefSlow(d, nr);
        // The last reference dropped: this caller owns the page alone and may write the count with a plain store.
        if (left == 0)
            d->PpRefCount = 1;
        return left;
    }

    /// <summary>
    /// The atomic drop of <paramref name="nr"/> references, for a page of this pool. Once the count has moved,
    /// another thread may finish with the page (the last put of a fragment page that a drain or Dispose released,
    /// and with it the pool and its regions): nothing after the drop reads the descriptor unless this call holds
    /// the page (the count it left is 0, or it took more than it may and restores them).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private long UnrefSlow(NetMem* d, long nr)
    {
        // Interlocked: several holders of one page (fragments, shared packets) drop references concurrently;
        // exactly one of them sees zero.
        long left = Interlocked.Add(ref d->PpRefCount, -nr);
        RaceHooks.At(RaceHooks.AfterUnrefSlow);
        return CheckUnrefDrop(d, nr, left);
    }

    /// <summary>
    /// What <see cref="UnrefSlow"/> checks once its atomic drop of <paramref name="nr"/> references left
    /// <paramref name="left"/>: an over-release puts the references back and throws. The same rules hold after the
    /// drop that <c>UnrefPage</c> makes inline.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private long CheckUnrefDrop(NetMem* d, long nr, long left)
    {
        if (left < 0)
        {
            Interlocked.Add(ref d->PpRefCount, nr);
            PoolThrowHelper.ThrowDoublePut(new NetMemRef(d));
        }
        if (left > FragBiasFloor)
        {
            // The count still carries a fragment bias: checked against this pool's own frag state, no descriptor read.
            if (FragOverReleased(d, left))
            {
                Interlocked.Add(ref d->PpRefCount, nr);
                FragThrowHelper.ThrowFragOverRelease(new NetMemRef(d));
            }
        }
        else if (left + nr > FragBiasFloor && IsFragPageBeingCut(d))
        {
            // The drop went through the bias the pool holds on a fragment page it is cutting (UnrefPage of more
            // references than users hold): the pool would go on cutting a page nobody references. Put them back.
            // A page a driver split itself (FragmentPage) may carry any bias: its drain is the driver's to size.
            Interlocked.Add(ref d->PpRefCount, nr);
            FragThrowHelper.ThrowFragOverRelease(new NetMemRef(d));
        }
        return left;
    }

    /// <summary>
    /// The kernel's <c>__page_pool_page_can_be_recycled</c> plus the sync for device: true when the page may
    /// go back to a cache; otherwise the page has been released (released_refcnt, or the pool is destroying).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool CanRecycle(NetMem* d, int dmaSyncSize)
    {
        // Volatile: other holders drop page references from any thread. Read once: the count that decided the release
        // is the one the statistics give (released_refcnt), as the kernel's single page_ref_count read; a second read
        // could find the other holder gone and count a release for no reason.
        bool referenced = Volatile.Read(ref d->RefCount) != 1;
        // Volatile: _state flips once, from any thread, in Dispose; a late put must see it and release.
        if (referenced || Volatile.Read(ref _state) != StateAlive)
        {
            ReleaseUnrecyclable(d, referenced);
            return false;
        }
        // Page references were taken and are all dropped (the count is 1, and this caller dropped the last pool
        // reference, so no one else can take one now): the page goes back with the exact signature, which the fast
        // paths compare (see IsOrdinaryLastReference).
        if (d->PpMagic != NetMemRef.PpSignature)
            d->PpMagic = NetMemRef.PpSignature;
        if (_dmaSync)
            SyncForDeviceOrRelease(d, dmaSyncSize);
        if (_debug)
            DebugOnPut(d);
        return true;
    }

    /// <summary>
    /// The recycle's sync for the device. A mapper that throws leaves the page unfit for the device and no one's:
    /// it goes back to the provider before the exception goes on, so it is not lost.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void SyncForDeviceOrRelease(NetMem* d, int dmaSyncSize)
    {
        try
        {
            SyncForDevice(d, dmaSyncSize);
        }
        catch
        {
            ReturnPage(d);
            throw;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReleaseUnrecyclable(NetMem* d, bool referenced)
    {
        if (referenced)
            Interlocked.Increment(ref _shared.ReleasedRefcnt);
        ReturnPage(d);
    }

    private void SyncForDevice(NetMem* d, int dmaSyncSize)
    {
        uint size = dmaSyncSize < 0 ? (uint)_maxLen : Math.Min((uint)dmaSyncSize, (uint)_maxLen);
        _mapper.SyncForDevice(d->DmaAddr + (ulong)_offset, size, _dmaDir);
    }

    /// <summary>Consumer thread only: the last reference was dropped; recycle into the alloc cache.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void RecycleDirectUnrefed(NetMem* d, int dmaSyncSize)
    {
        if (!CanRecycle(d, dmaSyncSize))
            return;
        // Plain read: DisableDirectRecycling sets it once, with the consumer quiescent or on this thread. Refused
        // direct recycling is a put without allowDirect (the ring), not a full cache.
        if (_directRecyclingDisabled != 0)
        {
            ConsumerRecycleInRing(d);
            return;
        }
        int count = CacheCount;
        if ((uint)count < AllocCacheSize)
        {
            Unsafe.Add(ref CacheRef, count) = (nint)d;
            CacheCount = count + 1;
            _hot.Stats.Cached++;
            return;
        }
        _hot.Stats.CacheFull++;
        // Plain read of a flag Trim sets from another thread: seeing it late only delays the trim.
        if (_consumerTrimPending != 0)
        {
            ConsumerTrimThenRecycle(d);
            return;
        }
        ConsumerRecycleInRing(d);
    }

    /// <summary>Consumer thread only, at a full alloc cache: the trim another thread asked for, then the ring.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ConsumerTrimThenRecycle(NetMem* d)
    {
        try
        {
            ConsumerTrimDeferred();
        }
        finally
        {
            // Even when a release in the trim throws: this page is not lost with it.
            ConsumerRecycleInRing(d);
        }
    }

    /// <summary>Consumer thread only: page_pool_recycle_in_ring through the consumer's put buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ConsumerRecycleInRing(NetMem* d)
    {
        int count = _hot.PutCount;
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_putBuffer), count) = (nint)d;
        _hot.Stats.Ring++;
        _hot.PutCount = ++count;
        if (count == PutBufferSize)
            FlushToRing(_putBuffer, ref _hot.PutCount, ref _hot.Stats);
    }

    /// <summary>Any thread: the last reference was dropped; recycle through the per-CPU cache and the ring.</summary>
    internal void RecycleUnrefed(NetMem* d, int dmaSyncSize) => RecycleUnrefed(PutterState.Current, d, dmaSyncSize);

    /// <summary>As <see cref="RecycleUnrefed(NetMem*, int)"/>, for a thread whose state <paramref name="s"/> the caller looked up.</summary>
    private void RecycleUnrefed(PutterState s, NetMem* d, int dmaSyncSize)
    {
        if (CanRecycle(d, dmaSyncSize))
            RecycleInRing(s, d);
    }

    /// <summary>
    /// The kernel's <c>page_pool_recycle_in_ring</c>, fronted by the per-CPU cache, for the thread whose state
    /// <paramref name="s"/> the caller looked up.
    /// </summary>
    private void RecycleInRing(PutterState s, NetMem* d)
    {
        PerCpuCache? c = EnterPerCpu(s);
        if (c == null)
        {
            if (_ring.TryEnqueue((nint)d))
            {
                Interlocked.Increment(ref _shared.Ring);
                // A Dispose that drained the ring before this page went in would have missed it.
                DrainIfDisposedSince();
            }
            else
            {
                Interlocked.Increment(ref _shared.RingFull);
                ReturnPage(d);
            }
            return;
        }
        Exception? failed = null;
        try
        {
            int count = c.Count;
            c.Items[count] = (nint)d;
            c.Count = count + 1;
            c.Stats.Ring++;
            if (count + 1 == PerCpuCache.Capacity)
            {
                failed = FlushPerCpuCatching(c);
                LetGoIfMigrated(s, c);
            }
        }
        finally
        {
            ExitPerCpu(s);
        }
        AfterSection(failed);
    }

    /// <summary>
    /// After a per-CPU section: a Dispose that drained the caches before the section put pages into one would have
    /// missed them, so they are drained now; then a failure of the section's flush (a DMA mapper's unmap that
    /// threw while releasing a page the ring refused) is rethrown.
    /// </summary>
    private void AfterSection(Exception? failed)
    {
        DrainIfDisposedSince();
        FirstException.ThrowIfNotNull(failed);
    }

    /// <summary>
    /// <see cref="FlushPerCpu"/> inside a section, returning what a release threw instead of throwing it: the
    /// section still closes, the rest of a bulk put still goes in, and the pages stay consistent (the flush fixes
    /// the cache before releasing anything).
    /// </summary>
    private Exception? FlushPerCpuCatching(PerCpuCache c)
    {
        try
        {
            FlushPerCpu(c);
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    /// <summary>Recycles a batch through one per-CPU cache: one CAS for the cache, one per ring batch.</summary>
    private void RecycleInRingBulk(ReadOnlySpan<nint> pages)
    {
        if (!pages.IsEmpty)
            RecycleInRingBulk(PutterState.Current, pages);
    }

    /// <summary>As <see cref="RecycleInRingBulk(ReadOnlySpan{nint})"/>, for a thread whose state <paramref name="s"/> the caller looked up.</summary>
    private void RecycleInRingBulk(PutterState s, ReadOnlySpan<nint> pages)
    {
        PerCpuCache? c = EnterPerCpu(s);
        if (c == null)
        {
            int enq = _ring.EnqueueBurst(pages);
            Interlocked.Add(ref _shared.Ring, enq);
            try
            {
                if (enq < pages.Length)
                {
                    Interlocked.Add(ref _shared.RingFull, pages.Length - enq);
                    ReturnPages(pages[enq..]);
                }
            }
            finally
            {
                if (enq > 0)
                    DrainIfDisposedSince(); // as in RecycleInRing
            }
            return;
        }
        Exception? failed = null;
        try
        {
            failed = AppendFlushingToRing(c.Items, ref c.Count, ref c.Stats, pages, out bool flushed);
            if (flushed)
                LetGoIfMigrated(s, c);
        }
        finally
        {
            ExitPerCpu(s);
        }
        AfterSection(failed);
    }

    /// <summary>Owner of <paramref name="c"/> only: moves the oldest half of the cache to the ring in one batch.</summary>
    private void FlushPerCpu(PerCpuCache c) => FlushToRing(c.Items, ref c.Count, ref c.Stats);

    /// <summary>
    /// Owner of <paramref name="items"/> only: moves the oldest half to the ring in one batch; pages the ring
    /// cannot take are released (ring_full, and no longer counted as ring). Updates <paramref name="count"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit] // the stack buffer is written before it is read
    private void FlushToRing(Span<nint> items, ref int count, ref PoolCounters stats)
    {
        int n = items.Length / 2;
        Debug.Assert(count >= n && count <= items.Length, "flush of a cache that is not full enough");
        int enq = _ring.EnqueueBurst(items[..n]);
        Debug.Assert((uint)enq <= (uint)n, "ring took more than offered");
        int rejected = n - enq;
        Span<nint> refused = stackalloc nint[PutBufferSize / 2];
        items.Slice(enq, rejected).CopyTo(refused);
        // The items and the count are right before any page is released: a release that throws (a DMA mapper's
        // unmap) leaves no page both in the ring and in the cache.
        items[n..count].CopyTo(items);
        count -= n;
        if (rejected == 0)
            return;
        stats.RingFull += rejected;
        stats.Ring -= rejected;
        var log = PagePoolEventSource.Log;
        if (log.IsEnabled(EventLevel.Informational, PagePoolEventSource.Keywords.Ring))
            log.RingFull(Id, rejected);
        ReturnPages(refused[..rejected]);
    }

    /// <summary>
    /// Releases every page of <paramref name="pages"/>, even when one release throws (the first exception is
    /// rethrown at the end): a page whose release failed stays in flight, the others are not lost with it.
    /// </summary>
    private void ReturnPages(ReadOnlySpan<nint> pages)
    {
        FirstException first = default;
        ReleaseEach(pages, ref first);
        first.ThrowIfAny();
    }

    /// <summary>
    /// Empties a cache (<paramref name="items"/> up to <paramref name="count"/>) and releases its pages, keeping the
    /// first exception in <paramref name="first"/>. The count goes to 0 first, so a page whose release throws is in
    /// flight, not still in the cache; the pages are copied out first, so a callback that runs during a release (an
    /// unmap that calls Trim or recycles) cannot change what is being released.
    /// </summary>
    private void ReleaseCache(Span<nint> items, ref int count, ref FirstException first)
    {
        Debug.Assert((uint)count <= (uint)items.Length && count <= AllocCacheSize, "cache count out of range");
        Span<nint> pages = stackalloc nint[AllocCacheSize];
        pages = pages[..count];
        items[..pages.Length].CopyTo(pages);
        count = 0;
        ReleaseEach(pages, ref first);
    }

    /// <summary><see cref="ReleaseCache"/> for the consumer's alloc cache.</summary>
    private void ReleaseAllocCache(ref FirstException first)
    {
        Span<nint> pages = stackalloc nint[AllocCacheSize];
        pages = pages[..CacheCount];
        Cache[..pages.Length].CopyTo(pages);
        CacheCount = 0;
        ReleaseEach(pages, ref first);
    }

    /// <summary>
    /// Releases every page of <paramref name="pages"/> and returns how many were released; the first exception a
    /// release threw is left in <paramref name="first"/> (unless it already holds one) and that page stays in flight.
    /// </summary>
    private int ReleaseEach(ReadOnlySpan<nint> pages, ref FirstException first)
    {
        int released = 0;
        foreach (nint p in pages)
        {
            if (!ClaimForRelease((NetMem*)p))
                continue;
            try
            {
                ReturnPage((NetMem*)p);
                released++;
            }
            catch (Exception e)
            {
                // The page stays in flight, unreferenced, as it was before the claim.
                ((NetMem*)p)->PpRefCount = 0;
                first.Keep(e);
            }
        }
        return released;
    }

    /// <summary>
    /// Before a page taken off a cache or the ring is released: true when it is this pool's page in the pool (count
    /// 0), which this call now holds (count 1, until <see cref="ReturnPage"/> clears it). False for a second entry of
    /// a page put twice (see <see cref="ClaimForHandOut"/>) that is in use or already released: it is skipped, so a
    /// page is never given back to its provider twice.
    /// </summary>
    private bool ClaimForRelease(NetMem* d)
    {
        if ((d->PpMagic & NetMemRef.PpMagicMask) != NetMemRef.PpSignature || d->Pp != _pp)
            return false;
        // Interlocked: the two entries may be released by two threads at once (Dispose emptying the alloc cache on
        // the consumer, a drain of the ring on another thread); exactly one takes the count from 0.
        if (Interlocked.CompareExchange(ref d->PpRefCount, 1, 0) != 0)
            return false;
        if ((d->PpMagic & NetMemRef.PpMagicMask) == NetMemRef.PpSignature && d->Pp == _pp)
            return true;
        // The other entry's release finished between the check and the claim (ReturnPage clears pp_magic before it
        // clears the count): the page is the provider's; leave its count as it was.
        d->PpRefCount = 0;
        return false;
    }

    /// <summary>
    /// The kernel's <c>page_pool_return_page</c>: unmaps the page, clears its pool fields, counts the release and
    /// drops the pool's page reference (the page goes back to the provider unless someone else holds one).
    /// </summary>
    internal void ReturnPage(NetMem* d)
    {
        var page = new NetMemRef(d);
        if (_debug)
            DebugOnRelease(d);
        if (_dmaMap)
            UnmapTracked(d);
        d->PpMagic = 0;
        d->Pp = 0;
        d->DmaAddr = 0;
        d->PpRefCount = 0;
        var log = PagePoolEventSource.Log;
        bool trace = log.IsEnabled(EventLevel.Verbose, PagePoolEventSource.Keywords.PageState);
        ulong address = trace ? (ulong)page.Address : 0;
        int index = trace ? page.Index : 0;
        if (_provider.Release(page))
            page.PutPage();
        // Counted once the page is back with its provider, and the descriptor is not read after: the count may
        // bring InFlight to 0, and another thread may then free the pool and its provider's regions.
        // Interlocked: releases happen on any thread (ring full, late puts, shared pages, destroy).
        long release = Interlocked.Increment(ref _release);
        if (trace)
            log.StateRelease(Id, address, release, index);
        // Volatile: see CanRecycle; the last page back after Dispose frees the pool.
        if (IsDestroying)
            TryFreeAfterRelease();
    }
}
