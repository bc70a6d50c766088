using System.Runtime.CompilerServices;
using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// The consumer thread's handle on a <see cref="PagePool"/> (returned by <see cref="PagePool.BindConsumer"/>):
/// holding it proves the NAPI-like context, so its methods run the alloc-cache fast path with no per-call
/// thread check. Use it only on the thread that bound it; in debug mode every call verifies that.
/// </summary>
/// <remarks>
/// A small value type, copied freely: a copy is the same handle. Kept in a local, its pool lives in a register,
/// so a call on the handle reaches the pool's alloc cache with no load of its own. <c>default</c> is no handle:
/// its methods throw <see cref="NullReferenceException"/>, as a method called on a null reference would.
/// </remarks>
public readonly unsafe struct PagePoolConsumer : IEquatable<PagePoolConsumer>
{
    // Two words, no method of this type takes its address (the slow calls are static and get the fields): the
    // JIT keeps a local handle in registers.
    private readonly PagePool _pool;
    private readonly int _binding;

    internal PagePoolConsumer(PagePool pool, int threadId, int binding)
    {
        _pool = pool;
        ThreadId = threadId;
        _binding = binding;
    }

    /// <summary>The pool.</summary>
    public PagePool Pool => _pool;

    /// <summary>Managed thread id of the thread that bound this handle.</summary>
    public int ThreadId { get; }

    /// <summary>Whether this is still the pool's current consumer handle (no later <see cref="PagePool.BindConsumer"/>).</summary>
    public bool IsBound => _pool != null && _pool.IsCurrentBinding(_binding, ThreadId);

    /// <summary>Whether both are the same handle: the same pool and the same <see cref="PagePool.BindConsumer"/> call.</summary>
    public bool Equals(PagePoolConsumer other) => ReferenceEquals(_pool, other._pool) && _binding == other._binding;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is PagePoolConsumer other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(_pool, _binding);

    /// <summary>Whether both are the same handle.</summary>
    public static bool operator ==(PagePoolConsumer left, PagePoolConsumer right) => left.Equals(right);

    /// <summary>Whether they are different handles.</summary>
    public static bool operator !=(PagePoolConsumer left, PagePoolConsumer right) => !left.Equals(right);

    /// <summary>
    /// The kernel's <c>page_pool_alloc_pages</c> in NAPI context: one buffer from the alloc cache (refilled from the
    /// ring, else from the provider), or <see cref="NetMemRef.Null"/> when memory is exhausted.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NetMemRef AllocPage()
    {
        // Debug mode blocks the pool's fast pop (the cache word's count reads as blocked), so the thread check
        // lives on the slow call alone and costs the fast path nothing.
        return _pool.TryConsumerAllocFast(out NetMem* d) ? new NetMemRef(d) : AllocSlow(_pool, _binding, ThreadId);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static NetMemRef AllocSlow(PagePool pool, int binding, int threadId)
    {
        Verify(pool, binding, threadId);
        return pool.ConsumerAllocSlow();
    }

    /// <summary>Bulk allocation on the consumer thread; returns how many were allocated.</summary>
    public int AllocPages(Span<NetMemRef> pages)
    {
        Verify(_pool, _binding, ThreadId);
        return _pool.ConsumerAllocBulk(pages);
    }

    /// <summary>
    /// The kernel's <c>page_pool_recycle_direct</c>: drops the page's reference and, when it was the last,
    /// recycles the page into the alloc cache (the ring when the cache is full).
    /// </summary>
    /// <exception cref="InvalidOperationException">Not this pool's page, or already put.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void RecycleDirect(NetMemRef page)
    {
        if (!_pool.TryConsumerRecycleFast(page) && (_pool.DebugMode || !_pool.TryConsumerPutFrag(page)))
            RecycleDirectSlow(_pool, _binding, ThreadId, page, -1);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RecycleDirectSlow(PagePool pool, int binding, int threadId, NetMemRef page, int dmaSyncSize)
    {
        // A piece of a page the caller split itself (FragmentPage): one atomic decrement, before any other check.
        if (pool.TryConsumerUnrefShared(page, dmaSyncSize))
            return;
        Verify(pool, binding, threadId);
        pool.ConsumerRecycleDirectSlow(page, dmaSyncSize);
    }

    /// <summary>
    /// The kernel's <c>page_pool_put_page</c> in NAPI context: as <see cref="PagePool.PutPage(NetMemRef, int, bool)"/>
    /// with the consumer context already proven.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PutPage(NetMemRef page, int dmaSyncSize = -1, bool allowDirect = true)
    {
        if (allowDirect)
        {
            // A piece of the fragment page being cut (this pool's page in use, by construction): the consumer
            // takes it back from its piece count, no atomic. PutPage is the fragment API's put, so this test
            // comes first here; RecycleDirect, the whole-page API, tests it only after its fast path fails. Then a
            // whole page held alone, then a piece of a page the driver split itself (FragmentPage) or shared: one
            // atomic decrement, inline (page_pool_unref_and_test; the last piece reads 1 and takes the fast recycle).
            if ((_pool.DebugMode || !_pool.TryConsumerPutFrag(page)) && !_pool.TryConsumerRecycleFast(page)
                && !_pool.TryConsumerUnrefShared(page, dmaSyncSize))
                RecycleDirectSlow(_pool, _binding, ThreadId, page, dmaSyncSize);
            return;
        }
        if (!_pool.TryConsumerPutRingFast(page))
            PutRingSlow(_pool, _binding, ThreadId, page, dmaSyncSize);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void PutRingSlow(PagePool pool, int binding, int threadId, NetMemRef page, int dmaSyncSize)
    {
        Verify(pool, binding, threadId);
        pool.ConsumerPutRing(page, dmaSyncSize);
    }

    /// <summary>
    /// The kernel's <c>page_pool_put_unrefed_netmem</c> on the consumer thread: <see cref="PagePool.PutUnrefedPage"/>
    /// for a page whose last reference was dropped with <see cref="PagePool.UnrefPage(NetMemRef, long)"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">As <see cref="PagePool.PutUnrefedPage"/>.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PutUnrefedPage(NetMemRef page, int dmaSyncSize, bool allowDirect)
    {
        // UnrefPage left the page it took to 0 at pp_ref_count 1, the one reference its caller now holds alone: the
        // put of that reference is the recycle fast path's own case (this pool's page, count 1, no other page
        // reference), and its failures (debug mode, DMA sync, a full cache or buffer, anything unusual) take the
        // checked path, which also verifies the handle.
        if (allowDirect ? !_pool.TryConsumerRecycleFast(page) : !_pool.TryConsumerPutRingFast(page))
            PutUnrefedSlow(_pool, _binding, ThreadId, page, dmaSyncSize, allowDirect);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void PutUnrefedSlow(PagePool pool, int binding, int threadId, NetMemRef page, int dmaSyncSize, bool allowDirect)
    {
        Verify(pool, binding, threadId);
        pool.ConsumerPutUnrefed(page, dmaSyncSize, allowDirect);
    }

    /// <summary>
    /// The kernel's <c>page_pool_alloc_frag</c> in NAPI context: a piece of <paramref name="size"/> bytes (rounded
    /// up to <see cref="PagePool.FragAlignment"/>) of the pool's fragment page, with no lock and no atomic operation.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is not in 1..<see cref="PagePool.UsableSize"/>.</exception>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NetMemRef AllocFrag(int size, out int offset)
    {
        Verify(_pool, _binding, ThreadId);
        return _pool.ConsumerAllocFrag(size, out offset);
    }

    /// <summary>The kernel's <c>page_pool_alloc</c> in NAPI context: a whole buffer or a fragment, as <see cref="PagePool.Alloc(int, out int)"/>.</summary>
    public NetMemRef Alloc(int size, out int offset) => Alloc(size, out offset, out _);

    /// <summary>As <see cref="PagePool.Alloc(int, out int, out int)"/>, in NAPI context.</summary>
    public NetMemRef Alloc(int size, out int offset, out int trueSize)
    {
        Verify(_pool, _binding, ThreadId);
        return _pool.ConsumerAlloc(size, out offset, out trueSize);
    }

    /// <summary>The kernel's <c>page_pool_free_va</c> in NAPI context: puts the page or piece holding <paramref name="va"/>.</summary>
    public void FreeVa(void* va, bool allowDirect = true) => _pool.ConsumerPutAt(this, (byte*)va, -1, allowDirect);

    /// <summary>
    /// In debug mode, and while the pool has no consumer (<see cref="PagePool.UnbindConsumer"/>): throws unless the
    /// calling thread is the handle's and the handle is still current.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Verify(PagePool pool, int binding, int threadId)
    {
        if (pool.VerifyHandles)
            VerifyBinding(pool, binding, threadId);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void VerifyBinding(PagePool pool, int binding, int threadId)
    {
        if (pool.IsUnbound)
            DriverThrowHelper.ThrowUnbound(pool.Id);
        if (Environment.CurrentManagedThreadId != threadId)
            throw new InvalidOperationException(
                $"PagePool {pool.Id}: consumer handle bound to thread {threadId} used on thread {Environment.CurrentManagedThreadId}.");
        if (!pool.IsCurrentBinding(binding, threadId))
            throw new InvalidOperationException($"PagePool {pool.Id}: this consumer handle was replaced by a later BindConsumer.");
    }
}
