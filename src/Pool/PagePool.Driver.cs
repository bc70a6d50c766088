using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using UnmanagedPool.Internal;
using UnmanagedPool.Native;

namespace UnmanagedPool;

// The calls a NIC driver makes around its RX ring (include/net/page_pool/helpers.h, net/core/page_pool.c):
// page_pool_fragment_netmem (a driver that splits pages itself, as mlx5's striding RQ), page_pool_dma_sync_for_cpu
// (before the CPU reads what the device wrote), page_pool_disable_direct_recycling and page_pool_unlink_napi (a
// queue being stopped or its NAPI moved).
public sealed unsafe partial class PagePool
{
    // The consumer thread id while no thread is bound (managed thread ids start at 1).
    private const int NoConsumer = 0;

    // Nonzero once DisableDirectRecycling ran: allowDirect is refused for good. Set once, read by the consumer's
    // recycle slow path (RecycleDirectUnrefed); the fast path is blocked through RecycleBlocked in the cache word.
    private int _directRecyclingDisabled;

    // Nonzero between UnbindConsumer and the next BindConsumer.
    private int _unbound;

    // What the consumer handle verifies on its slow calls (and on its fragment calls): true in debug mode and
    // while the pool is unbound, so a stale handle fails with a clear exception at no cost to the fast path.
    private bool _verifyHandles;

    /// <summary>Whether the consumer handle checks its binding (debug mode, or no consumer bound).</summary>
    internal bool VerifyHandles
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _verifyHandles;
    }

    /// <summary>Whether <see cref="DisableDirectRecycling"/> has been called.</summary>
    public bool IsDirectRecyclingDisabled => Volatile.Read(ref _directRecyclingDisabled) != 0;

    /// <summary>Whether no thread is the pool's consumer (after <see cref="UnbindConsumer"/>, before the next <see cref="BindConsumer"/>).</summary>
    public bool IsUnbound => Volatile.Read(ref _unbound) != 0;

    // =====================================================================================================
    // page_pool_fragment_netmem
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_fragment_netmem</c> / <c>page_pool_fragment_page</c>: sets the <c>pp_ref_count</c>
    /// of a whole page the caller holds alone to <paramref name="nr"/>, so that the caller can split the page itself
    /// and hand out its pieces, each put once with <see cref="PutPage(NetMemRef, int, bool)"/>. A driver that sets a
    /// large bias once (mlx5) gives the references of the pieces it never handed out back with
    /// <see cref="UnrefPage(NetMemRef, long)"/> when the page is used up.
    /// </summary>
    /// <param name="page">A page of this pool from <see cref="AllocPage"/>, held by its only reference.</param>
    /// <param name="nr">References the page carries from now on: 1..<see cref="BiasMax"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nr"/> is not in 1..<see cref="BiasMax"/>.</exception>
    /// <exception cref="InvalidOperationException">
    /// The page is not this pool's, is not held by exactly one reference (already split, or shared), or is the page
    /// the pool itself is cutting fragments from (<see cref="AllocFrag"/>). The page is unchanged.
    /// </exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // the driver's per-page call: a few tests and one store
    public void FragmentPage(NetMemRef page, long nr)
    {
        NetMem* d = page.Descriptor;
        // The ordinary case, with the checks FragmentPageChecked makes in one pass: the limit is 0 in debug mode
        // (its frag-cookie checks), with DMA sync, while unbound and from Dispose on (a freed pool's descriptors are
        // never touched); then nr in range and this pool's page (pp_magic and pp in one load) held by one reference.
        // A page the pool cuts fragments from carries its bias, never 1, and a page in the pool carries 0.
        // Volatile: another holder would be dropping a reference concurrently; we need the current count.
        if (_recycleLimit != 0 && (ulong)(nr - 1) < (ulong)BiasMax && d != null
            && (Vector128.LoadUnsafe(ref d->PpMagic) ^ _ppIdentity) == Vector128<ulong>.Zero && Volatile.Read(ref d->PpRefCount) == 1)
        {
            // Plain write, as below.
            d->PpRefCount = nr;
            return;
        }
        FragmentPageChecked(page, nr);
    }

    /// <summary><see cref="FragmentPage(NetMemRef, long)"/> with every check, each failure with its own exception.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void FragmentPageChecked(NetMemRef page, long nr)
    {
        if ((ulong)(nr - 1) >= (ulong)BiasMax)
            DriverThrowHelper.ThrowFragmentCount(nr);
        NetMem* d = CheckOwned(page);
        // Volatile: another holder would be dropping a reference concurrently; we need the current count. A page the
        // pool is cutting fragments from carries the pool's bias, never 1, so this test refuses it too.
        if (Volatile.Read(ref d->PpRefCount) != 1)
            ThrowFragmentRefused(page);
        // Plain write: the caller holds the only reference, so no one else touches the count; handing the pieces to
        // other threads (a ring, a queue) publishes it to them.
        d->PpRefCount = nr;
    }

    /// <summary>Why <see cref="FragmentPage(NetMemRef, long)"/> refuses a page that is not held whole by one reference.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowFragmentRefused(NetMemRef page)
    {
        // The frag states belong to other contexts; a page that is (or just was) being cut is named so.
        if (IsFragPageBeingCut(page.Descriptor))
            DriverThrowHelper.ThrowFragmentPoolFragPage(page);
        DriverThrowHelper.ThrowFragmentNotWhole(page);
    }

    /// <summary>
    /// Consumer thread only, from the handle's direct put after its fast paths failed (inline in its
    /// <c>PutPage</c>, the fragment API's put, and first in the slow call of its <c>RecycleDirect</c>): the put of one reference on
    /// an ordinary page of this pool held by several (the pieces of a page split with <see cref="FragmentPage(NetMemRef, long)"/>, a
    /// page shared with <see cref="RefPage(NetMemRef)"/>), as <c>page_pool_put_netmem</c>'s <c>page_pool_unref_and_test</c>:
    /// one atomic decrement; the last reference recycles the page direct. False, with nothing changed, sends the
    /// caller to the checked path: debug mode, no consumer bound, DMA sync, a disposed pool (all with the limit at
    /// 0), a page that is not this pool's, the pool's own fragment page, or a count outside 2..FragBiasFloor.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // a call around the atomic costs more than the atomic
    internal bool TryConsumerUnrefShared(NetMemRef page, int dmaSyncSize)
    {
        // Plain read, as in TryConsumerPutRingFast: 0 in debug mode, with DMA sync, when unbound and after Dispose
        // (a freed pool's descriptors are not touched).
        if (_recycleLimit == 0 || _verifyHandles)
            return false;
        NetMem* d = page.Descriptor;
        if (d == null || (Vector128.LoadUnsafe(ref d->PpMagic) ^ _ppIdentity) != Vector128<ulong>.Zero || (nint)d == _hot.Frag.Page)
            return false;
        // Volatile: other holders drop references concurrently; the range check needs the current count.
        long count = Volatile.Read(ref d->PpRefCount);
        if ((ulong)(count - 2) >= (ulong)(FragBiasFloor - 2))
            return false;
        // Interlocked: the other holders of the page drop their references concurrently; exactly one sees zero.
        long left = Interlocked.Decrement(ref d->PpRefCount);
        if (left > 0)
            return true;
        if (left < 0)
        {
            Interlocked.Increment(ref d->PpRefCount); // Interlocked: as above; undoes the extra put
            PoolThrowHelper.ThrowDoublePut(page);
        }
        RecycleLastShared(d, dmaSyncSize);
        return true;
    }

    /// <summary>The last reference of a shared page was dropped on the consumer thread: recycle it direct.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RecycleLastShared(NetMem* d, int dmaSyncSize) => RecycleDirectUnrefed(d, dmaSyncSize);

    // =====================================================================================================
    // page_pool_dma_sync_for_cpu
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_dma_sync_for_cpu</c> / <c>page_pool_dma_sync_netmem_for_cpu</c>: hands
    /// <paramref name="length"/> bytes the device wrote at <paramref name="offset"/> back to the CPU, through the
    /// mapper's <see cref="IDmaMapper.SyncForCpu"/> at <c>dma_addr + Offset + offset</c>. A no-op when the pool does
    /// not map (<see cref="PagePoolFlags.DmaMap"/> unset), and for a page whose mapping <see cref="Dispose"/> already
    /// took down.
    /// </summary>
    /// <param name="page">A page of this pool the caller holds a reference on.</param>
    /// <param name="offset">Bytes from <see cref="PagePoolOptions.Offset"/> (where the device starts writing).</param>
    /// <param name="length">Bytes to sync.</param>
    /// <exception cref="ArgumentOutOfRangeException">The range does not fit in the buffer after <see cref="PagePoolOptions.Offset"/>.</exception>
    /// <exception cref="InvalidOperationException">The pool maps and the page is not this pool's, or holds no reference.</exception>
    public void SyncForCpu(NetMemRef page, int offset, int length)
    {
        if (!_dmaMap)
            return;
        int usable = BufferSize - _offset;
        if ((uint)offset > (uint)usable || (uint)length > (uint)(usable - offset))
            DriverThrowHelper.ThrowSyncRange(offset, length, usable);
        NetMem* d = CheckOwned(page);
        // Dispose (another thread) flips the state before it takes the mappings down; a page of a disposed pool asks
        // the mapping table whether it is still mapped.
        if (!IsAlive && !IsDmaMapped(d))
            return;
        _mapper.SyncForCpu(d->DmaAddr + (ulong)(uint)(_offset + offset), (nuint)(uint)length, _dmaDir);
    }

    // =====================================================================================================
    // page_pool_disable_direct_recycling, page_pool_unlink_napi
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_disable_direct_recycling</c>: from now on no put recycles into the alloc cache;
    /// <c>allowDirect</c> (and <see cref="PagePoolConsumer.RecycleDirect(NetMemRef)"/>) sends the page through the
    /// ring instead (<see cref="PagePoolStats.RecycleRing"/>, never <see cref="PagePoolStats.RecycleCached"/>).
    /// Allocation from the alloc cache goes on. Permanent for the pool's life; a later <see cref="BindConsumer"/>
    /// does not lift it.
    /// </summary>
    /// <remarks>
    /// As in the kernel (NAPI disabled, or in its context), call it on the consumer thread or while the consumer
    /// is quiescent: a recycle already under way on the consumer may still finish into the alloc cache.
    /// </remarks>
    public void DisableDirectRecycling()
    {
        // Interlocked: set once from any thread; the consumer's recycle slow path reads it.
        Interlocked.Exchange(ref _directRecyclingDisabled, 1);
        // Interlocked: the word is the consumer's; an atomic OR never loses the count bits it holds, and with the
        // consumer quiescent (the contract) no plain store of its can drop the bit.
        Interlocked.Or(ref _hot.CacheWord, RecycleBlocked);
    }

    /// <summary>
    /// The kernel's <c>page_pool_unlink_napi</c>: no thread is the pool's consumer any more. Every
    /// <see cref="PagePoolConsumer"/> handle stops working (its calls throw <see cref="InvalidOperationException"/>),
    /// the pool's own methods take the any-thread paths on every thread, and the fragment page the consumer was
    /// cutting is drained. The alloc cache keeps its pages for the next consumer: a later <see cref="BindConsumer"/>,
    /// on any thread, takes over as when a driver moves a queue's NAPI.
    /// </summary>
    /// <remarks>Call it on the consumer thread or while the consumer is quiescent (its NAPI disabled).</remarks>
    /// <exception cref="InvalidOperationException">
    /// Draining the consumer's fragment page found more pieces put than handed out; the unbinding is done and that
    /// page stays in flight.
    /// </exception>
    public void UnbindConsumer()
    {
        // Volatile: read by the consumer handle's verification and by IsUnbound on any thread; set before the fast
        // paths close so that a stale handle that misses a closed fast path reports the unbinding.
        Volatile.Write(ref _unbound, 1);
        _verifyHandles = true;
        // Interlocked (a full fence): every handle bound so far stops being current; BindConsumer may race.
        Interlocked.Increment(ref _binding);
        // Volatile: other threads read the consumer id to decide whether allowDirect may be honoured.
        Volatile.Write(ref _consumerThreadId, NoConsumer);
        // The consumer is quiescent (the contract): its alloc-cache fast paths and put-buffer fast path close.
        BlockCacheFastPaths();
        // Volatile: other put paths test the limit; 0 sends them to the checked paths.
        Volatile.Write(ref _recycleLimit, 0);
        NetMem* whole = ConsumerDetachFrag();
        if (whole != null)
            RecycleInRing(PutterState.Current, whole);
    }

    /// <summary>
    /// Called by <see cref="BindConsumer"/> after an <see cref="UnbindConsumer"/>: the new consumer's fast paths
    /// open again (unless debug mode, DMA sync or a Dispose keep them closed).
    /// </summary>
    private void ResumeAfterUnbind()
    {
        if (!_debug)
            UnblockCacheFastPaths();
        if (!_debug && !_dmaSync)
        {
            // Volatile: other put paths test the limit.
            Volatile.Write(ref _recycleLimit, AllocCacheSize);
        }
        _verifyHandles = _debug;
        // Volatile: as in UnbindConsumer.
        Volatile.Write(ref _unbound, 0);
        // A Dispose on another thread may have closed the paths between the check in BindConsumer and the reopening
        // above; close them again.
        if (!IsAlive)
        {
            BlockCacheFastPaths();
            Volatile.Write(ref _recycleLimit, 0); // Volatile: as in Dispose
        }
    }

    /// <summary>Undoes <see cref="BlockCacheFastPaths"/>: the count goes back into the word. Consumer thread, or a quiescent consumer.</summary>
    private void UnblockCacheFastPaths()
    {
        long word = _hot.CacheWord;
        if ((word & CacheCountMask) != CountBlocked)
            return;
        // Volatile: the word carries the count again, after BlockedCount was last written.
        Volatile.Write(ref _hot.CacheWord, (word & ~CacheCountMask) | (uint)_hot.BlockedCount);
    }
}

/// <summary>Cold throw sites of the driver-facing calls.</summary>
internal static unsafe class DriverThrowHelper
{
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void ThrowFragmentCount(long nr) =>
        throw new ArgumentOutOfRangeException(nameof(nr), nr, $"FragmentPage sets 1..{PagePool.BiasMax} references (BiasMax).");

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void ThrowFragmentPoolFragPage(NetMemRef page) =>
        throw new InvalidOperationException(
            $"Page 0x{(nint)page.Address:x} is the page the pool cuts fragments from (AllocFrag); FragmentPage takes a whole page from AllocPage.");

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void ThrowFragmentNotWhole(NetMemRef page) =>
        throw new InvalidOperationException(
            $"Page 0x{(nint)page.Address:x}: FragmentPage needs a whole page held by its only reference (pp_ref_count {page.Value.PpRefCount}).");

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void ThrowSyncRange(int offset, int length, int usable) =>
        throw new ArgumentOutOfRangeException(nameof(offset), offset,
            $"SyncForCpu range [{offset}, {offset}+{length}) does not fit the {usable} bytes after PagePoolOptions.Offset.");

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void ThrowUnbound(long poolId) =>
        throw new InvalidOperationException(
            $"PagePool {poolId}: the consumer was unbound (UnbindConsumer); call BindConsumer on the thread that takes over.");
}
