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

// Putting pages back: the public put, unref and release entry points and their consumer and shared fast paths.
public sealed unsafe partial class PagePool
{
    // =====================================================================================================
    // Put and recycle
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_put_page</c>: drops one <c>pp_ref_count</c> reference; the last one recycles the
    /// page (into the alloc cache when <paramref name="allowDirect"/> and on the consumer thread, else through the
    /// per-CPU cache and the ring), or releases it when someone else holds a page reference.
    /// </summary>
    /// <param name="page">A page of this pool.</param>
    /// <param name="dmaSyncSize">Bytes the device may have written, synced for the device on recycle (DmaSyncDev); -1 for <see cref="PagePoolOptions.MaxLen"/>.</param>
    /// <param name="allowDirect">Recycle into the alloc cache; honoured only on the consumer thread.</param>
    /// <exception cref="InvalidOperationException">
    /// The page is not a page-pool page, belongs to another pool, or has no reference left (a double put).
    /// The pool is unchanged.
    /// </exception>
    public void PutPage(NetMemRef page, int dmaSyncSize = -1, bool allowDirect = false)
    {
        PutterState s = PutterState.Current;
        if (IsConsumer(s))
            ConsumerPut(page, dmaSyncSize, allowDirect);
        else if (!TryPutPerCpuFast(s, page.Descriptor))
            SharedPut(s, page, dmaSyncSize);
    }

    /// <summary>Consumer thread only: <see cref="PutPage(NetMemRef, int, bool)"/> through the alloc cache or the consumer's put buffer.</summary>
    private void ConsumerPut(NetMemRef page, int dmaSyncSize, bool allowDirect)
    {
        NetMem* d = CheckOwned(page);
        if (!UnrefAndTest(d))
            return;
        if (allowDirect)
            RecycleDirectUnrefed(d, dmaSyncSize);
        else if (CanRecycle(d, dmaSyncSize))
            ConsumerRecycleInRing(d);
    }

    /// <summary>
    /// A put from a thread other than the consumer when everything is ordinary (as for
    /// <see cref="TryConsumerRecycleFast"/>: a single-reference page of this pool, no debug, no DMA sync, not
    /// disposed) and the thread holds a per-CPU cache of this pool with room short of its flush point: the page
    /// goes in with plain stores inside a section (see <see cref="PerCpuCache"/>), and no check is repeated. False,
    /// with nothing changed, sends the caller to the checked path, which also acquires and flushes caches.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryPutPerCpuFast(PutterState s, NetMem* d)
    {
        // Volatile: Dispose drops the limit to 0 on another thread; a put that misses it is caught after its
        // section, as in AfterSection.
        if (Volatile.Read(ref _recycleLimit) == 0 || !IsOrdinaryLastReference(d))
            return false;
        PerCpuCache? c = TryEnterHeldPerCpu(s);
        if (c == null)
            return false;
        bool put = false;
        int count = c.Count;
        if (count < PerCpuCache.Capacity - 1)
        {
            d->PpRefCount = 0;
            Unsafe.Add(ref c.ItemsRef, count) = (nint)d;
            c.Count = count + 1;
            c.Stats.Ring++;
            put = true;
        }
        ExitPerCpu(s);
        // A Dispose that drained the caches before the page went in missed it.
        if (put)
            DrainIfDisposedSince();
        return put;
    }

    /// <summary>A thread other than the consumer: the checked put, through the per-CPU cache and the ring.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void SharedPut(PutterState s, NetMemRef page, int dmaSyncSize)
    {
        NetMem* d = CheckOwned(page);
        if (UnrefAndTest(d))
            RecycleUnrefed(s, d, dmaSyncSize);
    }

    /// <summary>The kernel's <c>page_pool_put_full_page</c>: <see cref="PutPage(NetMemRef, int, bool)"/> syncing <see cref="PagePoolOptions.MaxLen"/> bytes.</summary>
    public void PutFullPage(NetMemRef page, bool allowDirect = false) => PutPage(page, -1, allowDirect);

    /// <summary>
    /// The kernel's <c>page_pool_recycle_direct</c>: <see cref="PutFullPage(NetMemRef, bool)"/> with direct
    /// recycling, which is honoured only on the consumer thread (elsewhere the page takes the ring path). For a
    /// check-free fast path, use the <see cref="PagePoolConsumer"/> handle.
    /// </summary>
    public void RecycleDirect(NetMemRef page) => PutPage(page, -1, allowDirect: true);

    /// <summary>
    /// The kernel's <c>page_pool_put_netmem_bulk</c>: puts many pages, recycling those whose last reference
    /// this drops through the ring in one batch. All pages are checked before any is put.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// One page is invalid (see <see cref="PutPage(NetMemRef, int, bool)"/>); none was put. Or a page is listed more
    /// times than it is referenced: the puts before the extra one went through.
    /// </exception>
    public void PutPages(ReadOnlySpan<NetMemRef> pages)
    {
        if (!TryPutPagesFast(pages))
            PutPagesChecked(pages);
    }

    /// <summary>
    /// A bulk put when every page is ordinary (as for <see cref="TryPutPerCpuFast"/>: a single-reference page of
    /// this pool, no debug, no DMA sync, not disposed): one pass drops each page's reference as it checks it, then
    /// the whole batch goes in copies of up to a buffer's room into the consumer's put buffer (on the consumer
    /// thread) or the per-CPU cache (one section for the call), with one thread-state lookup. A page that is not
    /// ordinary (or is listed twice: its count is already 0 at its second place) undoes what the pass did, every
    /// count back to 1 as the caller handed it in, and false sends the caller to the checked path with nothing
    /// changed.
    /// </summary>
    private bool TryPutPagesFast(ReadOnlySpan<NetMemRef> pages)
    {
        // Volatile: as in TryPutPerCpuFast.
        if (Volatile.Read(ref _recycleLimit) == 0 || pages.IsEmpty)
            return false;
        PutterState s = PutterState.Current;
        ref NetMemRef first = ref MemoryMarshal.GetReference(pages);
        int n = pages.Length;
        int i = 0;
        for (; i < n; i++)
        {
            NetMem* d = Unsafe.Add(ref first, i).Descriptor;
            if (!IsOrdinaryLastReference(d))
                break;
            d->PpRefCount = 0;
        }
        if (i < n)
        {
            // The caller held one reference on each of these (they were ordinary when the pass reached them).
            for (int k = 0; k < i; k++)
                Unsafe.Add(ref first, k).Descriptor->PpRefCount = 1;
            return false;
        }
        // NetMemRef is one descriptor pointer wide: the batch is the descriptors' addresses as they are.
        ReadOnlySpan<nint> batch = MemoryMarshal.Cast<NetMemRef, nint>(pages);
        if (IsConsumer(s))
        {
            if (!TryAppendPutBufferFast(batch))
                ConsumerRecycleInRingBulk(batch);
        }
        else if (!TryAppendPerCpuFast(s, batch))
        {
            RecycleInRingBulk(s, batch);
        }
        return true;
    }

    /// <summary>
    /// Consumer thread only, for an ordinary batch (see <see cref="TryPutPagesFast"/>): appends it to the put buffer
    /// with plain stores when it fits short of the flush point, as <see cref="ConsumerRecycleInRing"/> does for one
    /// page, so a short burst pays no call and no copy routine. False, with nothing changed, when it would fill the
    /// buffer: the caller takes the flushing path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryAppendPutBufferFast(ReadOnlySpan<nint> pages)
    {
        int count = _hot.PutCount;
        int n = pages.Length;
        if (n >= PutBufferSize - count)
            return false;
        CopyShort(pages, ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_putBuffer), count));
        _hot.Stats.Ring += n;
        _hot.PutCount = count + n;
        return true;
    }

    /// <summary>
    /// Copies a burst of at most a buffer's length with a plain loop: measured faster than a call to the copy routine
    /// for the few entries a short burst has. The caller checked the room.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyShort(ReadOnlySpan<nint> from, ref nint to)
    {
        ref nint first = ref MemoryMarshal.GetReference(from);
        for (int i = 0; i < from.Length; i++)
            Unsafe.Add(ref to, i) = Unsafe.Add(ref first, i);
    }

    /// <summary>
    /// A thread other than the consumer, for an ordinary batch (see <see cref="TryPutPagesFast"/>): when the thread
    /// holds a per-CPU cache of this pool with room for the whole batch short of its flush point, the batch goes in
    /// with plain stores inside one section, as <see cref="TryPutPerCpuFast"/> does for one page. False, with
    /// nothing changed, sends the caller to <see cref="RecycleInRingBulk(PutterState, ReadOnlySpan{nint})"/>, which
    /// also acquires and flushes caches.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryAppendPerCpuFast(PutterState s, ReadOnlySpan<nint> pages)
    {
        PerCpuCache? c = TryEnterHeldPerCpu(s);
        if (c == null)
            return false;
        bool put = false;
        int count = c.Count;
        int n = pages.Length;
        if (n < PerCpuCache.Capacity - count)
        {
            CopyShort(pages, ref Unsafe.Add(ref c.ItemsRef, count));
            c.Count = count + n;
            c.Stats.Ring += n;
            put = true;
        }
        ExitPerCpu(s);
        // A Dispose that drained the caches before the pages went in missed them.
        if (put)
            DrainIfDisposedSince();
        return put;
    }

    /// <summary>
    /// Consumer thread only: <see cref="ConsumerRecycleInRing"/> for a batch, copied into the put buffer up to its
    /// flush point at a time. A flush whose release throws leaves room; the rest of the batch still goes in and the
    /// first exception is rethrown at the end.
    /// </summary>
    private void ConsumerRecycleInRingBulk(ReadOnlySpan<nint> pages) =>
        FirstException.ThrowIfNotNull(AppendFlushingToRing(_putBuffer, ref _hot.PutCount, ref _hot.Stats, pages, out _));

    /// <summary>
    /// Owner of <paramref name="items"/> only (a per-CPU cache or the consumer's put buffer): appends
    /// <paramref name="pages"/> after the <paramref name="count"/> valid ones, counted as ring, moving the oldest half
    /// to the ring (<see cref="FlushToRing"/>) each time the buffer fills. The buffer is never left full, so there is
    /// room on entry; a flush whose release throws still leaves room, the rest of the batch goes in and nothing is
    /// dropped. Returns the first exception a flush threw, for the caller to rethrow after its section.
    /// </summary>
    private Exception? AppendFlushingToRing(Span<nint> items, ref int count, ref PoolCounters stats, ReadOnlySpan<nint> pages, out bool flushed)
    {
        FirstException failed = default;
        flushed = false;
        while (!pages.IsEmpty)
        {
            int n = count;
            int k = Math.Min(items.Length - n, pages.Length);
            pages[..k].CopyTo(items[n..]);
            count = n + k;
            stats.Ring += k;
            pages = pages[k..];
            if (n + k == items.Length)
            {
                flushed = true;
                try
                {
                    FlushToRing(items, ref count, ref stats);
                }
                catch (Exception e)
                {
                    failed.Keep(e);
                }
            }
        }
        return failed.Value;
    }

    /// <summary><see cref="PutPages(ReadOnlySpan{NetMemRef})"/> with every check: all pages first, then each put.</summary>
    [SkipLocalsInit] // the stack buffer is written before it is read
    private void PutPagesChecked(ReadOnlySpan<NetMemRef> pages)
    {
        foreach (NetMemRef page in pages)
            CheckOwned(page);
        Span<nint> recyclable = stackalloc nint[PerCpuCache.Capacity];
        FirstException failed = default;
        while (!pages.IsEmpty)
        {
            int n = 0;
            int used = 0;
            for (; used < pages.Length && n < recyclable.Length; used++)
            {
                NetMem* d = pages[used].Descriptor;
                if (d->PpRefCount <= 0)
                {
                    // Listed more times than referenced: it passed the check above more than once. Recycle what
                    // this batch already unreferenced, so no page is lost, and refuse the extra put.
                    RecycleInRingBulk(recyclable[..n]);
                    PoolThrowHelper.ThrowDoublePut(pages[used]);
                }
                if (!UnrefAndTest(d))
                    continue;
                bool recycle;
                try
                {
                    recycle = CanRecycle(d, -1);
                }
                catch (Exception e)
                {
                    // That page was released (or is stuck in flight if its release threw); the batch goes on.
                    failed.Keep(e);
                    continue;
                }
                if (recycle)
                    recyclable[n++] = (nint)d;
            }
            pages = pages[used..];
            // A release that throws in a flush (a DMA mapper's unmap) does not stop the batch: every page this call
            // unreferenced is recycled or released, and the first exception is rethrown at the end.
            if (OnConsumerThread())
            {
                // The consumer's own put buffer: plain stores, flushed to the ring in batches.
                foreach (nint p in recyclable[..n])
                {
                    try
                    {
                        ConsumerRecycleInRing((NetMem*)p);
                    }
                    catch (Exception e)
                    {
                        failed.Keep(e);
                    }
                }
            }
            else
            {
                try
                {
                    RecycleInRingBulk(recyclable[..n]);
                }
                catch (Exception e)
                {
                    failed.Keep(e);
                }
            }
        }
        failed.ThrowIfAny();
    }

    /// <summary><see cref="PutPages(ReadOnlySpan{NetMemRef})"/> for raw addresses, each anywhere inside its page.</summary>
    /// <exception cref="InvalidOperationException">An address is in no live page, or a page is invalid; none was put.</exception>
    [SkipLocalsInit] // the stack buffer is written before it is read
    public void PutPages(ReadOnlySpan<nint> addresses)
    {
        Span<NetMemRef> pages = addresses.Length <= 64 ? stackalloc NetMemRef[addresses.Length] : new NetMemRef[addresses.Length];
        for (int i = 0; i < addresses.Length; i++)
            pages[i] = ResolveAddress((byte*)addresses[i]);
        PutPages(pages);
    }

    /// <summary>
    /// The kernel's <c>page_pool_unref_netmem</c>: drops <paramref name="nr"/> references at once.
    /// </summary>
    /// <returns>
    /// References left; 0 means the caller dropped the last one and now owns the page alone: as the kernel does,
    /// the count is reset to 1, and the page goes back with <see cref="PutUnrefedPage"/> (or
    /// <see cref="PutPage(NetMemRef, int, bool)"/>, or <see cref="ReleasePage(NetMemRef)"/>).
    /// </returns>
    /// <exception cref="InvalidOperationException">
    /// Not this pool's page, or fewer than <paramref name="nr"/> references held (on a fragment page being cut:
    /// more than the pieces handed out, which would drop the bias the pool holds). The count is unchanged.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nr"/> is not positive.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // the driver's drain: one read and one store when it holds every reference
    public long UnrefPage(NetMemRef page, long nr)
    {
        NetMem* d = page.Descriptor;
        // The ordinary case, with the checks UnrefPageChecked makes in one pass: the limit is 0 in debug mode, with
        // DMA sync, while unbound and from Dispose on (a freed pool's descriptors are never touched); this pool's
        // page (pp_magic and pp in one load) with 1 <= nr <= pp_ref_count <= FragBiasFloor, so neither a double put
        // nor the bias of a fragment page the pool is cutting (always above FragBiasFloor).
        if (_recycleLimit != 0 && d != null && (Vector128.LoadUnsafe(ref d->PpMagic) ^ _ppIdentity) == Vector128<ulong>.Zero)
        {
            // Volatile: other holders drop references concurrently; only the current count says who holds what.
            long count = Volatile.Read(ref d->PpRefCount);
            if (count == nr && (ulong)(count - 1) < (ulong)FragBiasFloor)
            {
                // page_pool_unref_netmem: pp_ref_count == nr, the caller holds every reference left and nobody else
                // can touch the count: no atomic; the count goes back to 1, the reference the caller now owns alone.
                d->PpRefCount = 1;
                return 0;
            }
            if ((ulong)(count - 2) < (ulong)(FragBiasFloor - 1) && (ulong)(nr - 1) < (ulong)(count - 1))
            {
                // Other references remain (1 <= nr < pp_ref_count): page_pool_unref_netmem's atomic_long_sub_return,
                // inline: measured, a call around it (UnrefSlow) cost more than the atomic itself (FragBenchmarks'
                // floors). Interlocked: several holders of one page drop references concurrently; exactly one of
                // them sees zero.
                long left = Interlocked.Add(ref d->PpRefCount, -nr);
                RaceHooks.At(RaceHooks.AfterUnrefSlow);
                // 1 <= left and left + nr <= FragBiasFloor: no check of UnrefSlow's applies (no double put, no bias).
                if ((ulong)(left - 1) < (ulong)(FragBiasFloor - nr))
                    return left;
                return UnrefPageDropped(d, nr, left);
            }
        }
        return UnrefPageChecked(page, nr);
    }

    /// <summary>
    /// After the inline drop of <see cref="UnrefPage(NetMemRef, long)"/> left a count outside its ordinary range:
    /// <see cref="UnrefSlow"/>'s checks (an over-release puts the references back and throws), and the last
    /// reference (the others were put meanwhile) leaves the count at 1 for the caller, who owns the page alone, as
    /// <see cref="UnrefNetmem"/> does.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private long UnrefPageDropped(NetMem* d, long nr, long left)
    {
        left = CheckUnrefDrop(d, nr, left);
        if (left == 0)
            d->PpRefCount = 1;
        return left;
    }

    /// <summary><see cref="UnrefPage(NetMemRef, long)"/> with every check, each failure with its own exception.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private long UnrefPageChecked(NetMemRef page, long nr)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(nr);
        NetMem* d = CheckOwned(page);
        return UnrefNetmem(d, nr);
    }

    /// <summary>
    /// The kernel's <c>page_pool_put_unrefed_netmem</c> (<c>page_pool_put_unrefed_page</c>): gives back a page whose
    /// last reference the caller dropped with <see cref="UnrefPage(NetMemRef, long)"/> (it returned 0), recycling
    /// it as <see cref="PutPage(NetMemRef, int, bool)"/> does, with no reference left to drop.
    /// </summary>
    /// <param name="page">A page of this pool that <see cref="UnrefPage(NetMemRef, long)"/> took to 0.</param>
    /// <param name="dmaSyncSize">Bytes the device may have written, synced for the device on recycle (DmaSyncDev); -1 for <see cref="PagePoolOptions.MaxLen"/>.</param>
    /// <param name="allowDirect">Recycle into the alloc cache; honoured only on the consumer thread.</param>
    /// <exception cref="InvalidOperationException">
    /// Not this pool's page, already back in the pool (a double put), or still referenced by someone else. The
    /// pool is unchanged.
    /// </exception>
    public void PutUnrefedPage(NetMemRef page, int dmaSyncSize, bool allowDirect)
    {
        NetMem* d = CheckUnrefed(page);
        PutterState s = PutterState.Current;
        if (!IsConsumer(s))
            RecycleUnrefed(s, d, dmaSyncSize);
        else if (allowDirect)
            RecycleDirectUnrefed(d, dmaSyncSize);
        else if (CanRecycle(d, dmaSyncSize))
            ConsumerRecycleInRing(d);
    }

    /// <summary>Consumer thread only: <see cref="PutUnrefedPage"/> from the consumer handle.</summary>
    internal void ConsumerPutUnrefed(NetMemRef page, int dmaSyncSize, bool allowDirect)
    {
        NetMem* d = CheckUnrefed(page);
        if (allowDirect)
            RecycleDirectUnrefed(d, dmaSyncSize);
        else if (CanRecycle(d, dmaSyncSize))
            ConsumerRecycleInRing(d);
    }

    /// <summary>
    /// Checks a page given to <see cref="PutUnrefedPage"/>: this pool's, held by the caller alone (the count
    /// <see cref="UnrefNetmem"/> reset to 1); takes that reference, so the page is the caller's to recycle.
    /// </summary>
    private NetMem* CheckUnrefed(NetMemRef page)
    {
        NetMem* d = CheckOwned(page);
        // Volatile: a count above 1 may be falling on another thread right now; only 1 means the caller owns it.
        if (Volatile.Read(ref d->PpRefCount) != 1)
            PoolThrowHelper.ThrowStillReferenced(page);
        d->PpRefCount = 0;
        return d;
    }

    /// <summary>
    /// The kernel's <c>page_pool_release_page</c>/<c>page_pool_return_page</c>: takes a page the caller owns
    /// (its only pool reference) out of the pool for good: unmaps it, clears pp_magic and pp, and gives it back
    /// to the provider once no page reference remains.
    /// </summary>
    /// <exception cref="InvalidOperationException">Not this pool's page, or not held by exactly one reference.</exception>
    public void ReleasePage(NetMemRef page)
    {
        NetMem* d = CheckOwned(page);
        // Volatile: another holder might be dropping a reference right now; we need the current count.
        if (Volatile.Read(ref d->PpRefCount) != 1)
            PoolThrowHelper.ThrowNotSoleOwner(page);
        d->PpRefCount = 0;
        ReturnPage(d);
    }

    /// <summary>Takes an extra pool reference on a page (the kernel's <c>page_pool_ref_netmem</c>).</summary>
    /// <exception cref="InvalidOperationException">Not this pool's page, or not currently referenced.</exception>
    public void RefPage(NetMemRef page)
    {
        NetMem* d = CheckOwned(page);
        // Interlocked: other holders may drop references concurrently.
        Interlocked.Increment(ref d->PpRefCount);
        if (_debug)
            DebugOnRef(d);
    }
}
