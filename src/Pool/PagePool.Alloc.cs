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

// Allocation on the consumer thread: the alloc-cache fast path, bulk allocation, the slow path and the refill
// from the ring.
public sealed unsafe partial class PagePool
{
    /// <summary>Consumer thread only: the fast path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal NetMemRef ConsumerAlloc()
    {
        return TryConsumerAllocFast(out NetMem* d) ? new NetMemRef(d) : ConsumerAllocSlow();
    }

    /// <summary>
    /// Consumer thread only: a pop from the alloc cache into <paramref name="d"/>; false when the cache is empty or
    /// the fast path is blocked (debug mode, Dispose), which sends the caller to <see cref="ConsumerAllocSlow"/>.
    /// A bool rather than a null test lets the JIT branch straight to the caller's slow call.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryConsumerAllocFast(out NetMem* d)
    {
        long word = _hot.CacheWord;
        // The count's byte less one, unsigned: an empty cache (0) and CountBlocked both fall outside the cache.
        uint top = (uint)(byte)word - 1;
        if (top < AllocCacheSize)
        {
            d = (NetMem*)Unsafe.Add(ref CacheRef, top);
            // A page in the pool holds no reference. One that does is in use: two puts that raced (the single-owner
            // put has no atomic) left it in the pool twice, and the slow path drops this entry (see ClaimForHandOut).
            if (d->PpRefCount == 0)
            {
                d->PpRefCount = 1;
                _hot.CacheWord = word - 1;
                return true;
            }
        }
        d = null;
        return false;
    }

    /// <summary>
    /// The hand-out of a page just taken off a cache or the ring by the thread that owns that step (the cache's
    /// owner; the ring's dequeue gives each entry to one thread): its count goes from 0 (in the pool) to 1. A page
    /// whose count is not 0 is in use: two puts that raced (the single-owner put has no atomic operation, as the
    /// kernel's) or a put after the page came back left it in the pool twice. This entry was already removed; the
    /// page is not handed out again, and the exception names it.
    /// </summary>
    /// <remarks>
    /// Two entries of one page taken at the same instant by two threads (the consumer and a per-CPU cache's holder)
    /// could both read 0; catching that too would take an atomic operation on every hand-out.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ClaimForHandOut(NetMem* d)
    {
        if (d->PpRefCount != 0)
            PoolThrowHelper.ThrowInPoolTwice(new NetMemRef(d), Id);
        d->PpRefCount = 1;
    }

    /// <summary>
    /// Consumer thread only: recycle_direct when everything is ordinary (a single-reference page of this pool,
    /// room in the alloc cache, no debug, no DMA sync, not disposed). False sends the caller to the full path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryConsumerRecycleFast(NetMemRef page)
    {
        NetMem* d = page.Descriptor;
        long word = _hot.CacheWord;
        // The count's byte and RecycleBlocked: a full cache (128), CountBlocked and RecycleBlocked all fail the test.
        uint count = (uint)word & (uint)(CacheCountMask | RecycleBlocked);
        if (count < AllocCacheSize && IsOrdinaryLastReference(d))
        {
            d->PpRefCount = 0;
            Unsafe.Add(ref CacheRef, count) = (nint)d;
            _hot.CacheWord = word + CacheWordRecycle; // count < 128: no carry out of the count's byte
            return true;
        }
        return false;
    }

    /// <summary>
    /// Whether <paramref name="d"/> is this pool's page held by its only user with no other page reference: the
    /// case the fast paths recycle without further checks. The exact signature is compared (the pool writes it
    /// so); a page with the low magic bits set, or anything else, takes the checked path. pp_magic and pp are
    /// adjacent (offsets 8 and 16): one 16-byte load, XOR and test covers both, measured cheaper on this path than
    /// two scalar compares or a vector compare into a mask register.
    /// <para>
    /// The kernel's <c>page_ref_count == 1</c> (no page reference besides the pool's) is the same compare: the only
    /// way to take one, <see cref="NetMemRef.GetPage"/>, sets <see cref="NetMemRef.PpPageRefsTaken"/> in pp_magic
    /// first, and only <see cref="CanRecycle"/>, with the count back at 1, clears it. Not reading
    /// <see cref="NetMem.RefCount"/> here measured FastPath 1.27 -> 1.15 x Floor in the cross-thread program.
    /// </para>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool IsOrdinaryLastReference(NetMem* d) =>
        d != null && (Vector128.LoadUnsafe(ref d->PpMagic) ^ _ppIdentity) == Vector128<ulong>.Zero && d->PpRefCount == 1;

    /// <summary>
    /// Consumer thread only: the full recycle_direct path (checks, references, sync, cache or ring). A piece of
    /// the fragment page being cut goes back to the consumer's piece count instead, with no atomic.
    /// </summary>
    internal void ConsumerRecycleDirectSlow(NetMemRef page, int dmaSyncSize)
    {
        NetMem* d = CheckOwned(page);
        if ((nint)d == ConsumerFragPage)
            ConsumerPutFrag(d);
        else if (UnrefAndTest(d))
            RecycleDirectUnrefed(d, dmaSyncSize);
    }

    /// <summary>
    /// Consumer thread only: a put without allowDirect when everything is ordinary (as
    /// <see cref="TryConsumerRecycleFast"/>), into the consumer's put buffer short of its flush point. False
    /// sends the caller to the full path, which also flushes the buffer to the ring.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryConsumerPutRingFast(NetMemRef page)
    {
        NetMem* d = page.Descriptor;
        int count = _hot.PutCount;
        // _recycleLimit is 0 in debug mode, with DMA sync and after Dispose: the checked path handles those.
        if (count < PutBufferSize - 1 && _recycleLimit != 0 && IsOrdinaryLastReference(d))
        {
            d->PpRefCount = 0;
            _putBufferData[count] = (nint)d;
            _hot.PutCount = count + 1;
            _hot.Stats.Ring++;
            return true;
        }
        return false;
    }

    /// <summary>Consumer thread only: a put without allowDirect (the ring path through the consumer's put buffer).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ConsumerPutRing(NetMemRef page, int dmaSyncSize)
    {
        NetMem* d = CheckOwned(page);
        if (UnrefAndTest(d) && CanRecycle(d, dmaSyncSize))
            ConsumerRecycleInRing(d);
    }

    /// <summary>Consumer thread only: bulk allocation; returns the count filled, or throws having filled nothing.</summary>
    internal int ConsumerAllocBulk(Span<NetMemRef> pages)
    {
        int done = 0;
        while (done < pages.Length)
        {
            int count = CacheCount;
            if (count == 0)
            {
                NetMemRef page;
                try
                {
                    page = ConsumerAllocSlow();
                }
                catch when (done > 0)
                {
                    // Part of the span is filled (a Dispose from a callback, a mapper that threw): the caller must
                    // get the count, or those pages are stranded. The failure shows again on the next call.
                    break;
                }
                if (page.IsNull)
                    break;
                pages[done++] = page;
                continue;
            }
            int n = Math.Min(count, pages.Length - done);
            ref nint cache = ref CacheRef;
            int taken = 0;
            bool duplicate = false;
            for (; taken < n; taken++)
            {
                NetMem* d = (NetMem*)Unsafe.Add(ref cache, count - 1);
                if (d->PpRefCount != 0)
                {
                    // In use: a second entry of a page put twice (see TryConsumerAllocFast). It stays on top for
                    // a call that has filled nothing to drop and report.
                    duplicate = true;
                    break;
                }
                count--;
                d->PpRefCount = 1;
                pages[done++] = new NetMemRef(d);
            }
            CacheCount = count;
            _hot.Stats.Fast += taken;
            // After the cache is consistent: a corruption found here throws.
            if (_debug)
                DebugOnAllocBulk(pages[..done], done - taken);
            if (duplicate)
            {
                if (done == 0)
                    ClaimForHandOut((NetMem*)Cache[--CacheCount]);
                break;
            }
        }
        return done;
    }

    /// <summary>Consumer thread only: the alloc cache is empty. Refill from the ring, else from the provider.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal NetMemRef ConsumerAllocSlow()
    {
        ThrowIfDisposed();
        if (CacheCount > 0)
        {
            // Debug mode: the fast path is blocked so that every allocation passes the checks here.
            NetMem* p = (NetMem*)Cache[--CacheCount];
            ClaimForHandOut(p);
            _hot.Stats.Fast++;
            if (_debug)
                DebugOnAlloc(p);
            return new NetMemRef(p);
        }
        if (RefillAllocCache())
        {
            NetMem* d = (NetMem*)Cache[--CacheCount];
            ClaimForHandOut(d);
            _hot.Stats.Refill++;
            if (_debug)
                DebugOnAlloc(d);
            return new NetMemRef(d);
        }
        NetMemRef fresh = AllocPagesSlow(ref _hot.Stats, Cache, new AllocCacheCount(this));
        if (!fresh.IsNull)
            return fresh;
        // The provider is out of pages: before failing, take what other threads parked in per-CPU caches.
        int stolen = StealFromPerCpuCaches(Cache[..AllocCacheRefill]);
        if (stolen == 0)
            return default;
        CacheCount = stolen;
        _hot.Stats.Refill++;
        NetMem* parked = (NetMem*)Cache[--CacheCount];
        ClaimForHandOut(parked);
        if (_debug)
            DebugOnAlloc(parked);
        return new NetMemRef(parked);
    }

    /// <summary>
    /// The kernel's <c>page_pool_refill_alloc_cache</c>: moves up to 64 pages from the ring (or, when it is empty,
    /// from the consumer's own put buffer) into the alloc cache, releasing pages of another NUMA node (waive).
    /// </summary>
    private bool RefillAllocCache()
    {
        // Called with the alloc cache empty: pages land straight in it, with no intermediate copy.
        Span<nint> batch = Cache[..AllocCacheRefill];
        int n = _ring.DequeueBurst(batch);
        // Pull the descriptors' lines in for writing while the cache is used from its top: most often they come from
        // another core's cache, where the threads that put the pages wrote them, and each hand-out writes its page's
        // count. A store, not a prefetch: .NET has no PREFETCHW, and a read prefetch brings a shared copy that the
        // hand-out's write must then take exclusive in a second transfer. The store writes the value the field holds
        // for every page of a live region (NetMem.MapCount: -1, the kernel's _mapcount of a page in no page table; no
        // code writes anything else, nothing reads it on any path), so it is harmless even for an entry whose page is
        // not in this pool any more (a duplicate of a page put twice). Measured, cross-thread program, PagePoolBulkPut32, five pairs of runs
        // alternating with Sse.Prefetch0 in its place: 0.41-0.52 x ConcurrentQueuePool (median 0.46) against 0.49-0.60
        // (median 0.54), better in four pairs of five.
        for (int k = 0; k < n; k++)
            ((NetMem*)batch[k])->MapCount = -1;
        if (n == 0 && _hot.PutCount > 0)
        {
            n = Math.Min(_hot.PutCount, batch.Length);
            for (int k = 0; k < n; k++)
                batch[k] = _putBuffer[--_hot.PutCount];
        }
        if (n == 0)
        {
            _hot.Stats.Empty++;
            return false;
        }
        CacheCount = n;
        int nid = _nid;
        if (nid >= 0)
            WaiveForeignNode(nid);
        return CacheCount > 0;
    }
}
