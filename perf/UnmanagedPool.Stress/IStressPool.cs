using UnmanagedPool.Native;

namespace UnmanagedPool.Stress;

/// <summary>
/// The pool under test as the harness sees it. Created on the thread that becomes its consumer. A test
/// substitutes a deliberately broken implementation to prove the harness's checks can fail.
/// </summary>
public interface IStressPool : IDisposable
{
    /// <summary>Bytes per buffer.</summary>
    int BufferSize { get; }

    /// <summary>Allocation from any thread (<see cref="PagePool.AllocPage"/>); null when memory ran out.</summary>
    NetMemRef Alloc();

    /// <summary>Put from any thread (<see cref="PagePool.PutPage(NetMemRef, int, bool)"/>).</summary>
    void Put(NetMemRef page, bool allowDirect);

    /// <summary>Consumer thread only: the alloc-cache fast path through the consumer handle.</summary>
    NetMemRef AllocDirect();

    /// <summary>Consumer thread only: <c>page_pool_recycle_direct</c> through the consumer handle.</summary>
    void RecycleDirect(NetMemRef page);

    /// <summary>Consumer thread only: bulk allocation; returns how many were allocated.</summary>
    int AllocBulk(Span<NetMemRef> pages);

    /// <summary>Bulk put from any thread (<see cref="PagePool.PutPages(ReadOnlySpan{NetMemRef})"/>).</summary>
    void PutBulk(ReadOnlySpan<NetMemRef> pages);

#if HAS_FRAGMENTS
    /// <summary>Consumer thread only: a fragment of <paramref name="size"/> bytes at <paramref name="offset"/> in the page returned.</summary>
    NetMemRef AllocFrag(int size, out int offset);
#endif

    /// <summary>
    /// Consumer thread only: the kernel's <c>page_pool_fragment_netmem</c> on a whole page this thread allocated
    /// (<see cref="PagePool.FragmentPage(NetMemRef, long)"/>).
    /// </summary>
    void FragmentPage(NetMemRef page, long nr) => OwnerOf(page).FragmentPage(page, nr);

    /// <summary>
    /// Consumer thread only: a driver done with a page it split drops the <paramref name="unusedReferences"/> of the
    /// pieces it never handed out or dropped itself (mlx5e_page_release_fragmented); the pieces handed out keep the
    /// page until their puts. This drops them with <see cref="PagePool.UnrefPage(NetMemRef, long)"/>
    /// and, when that was the last reference (no piece is out), gives the page back with
    /// <see cref="PagePool.PutUnrefedPage"/>, the kernel's <c>page_pool_put_unrefed_netmem</c>.
    /// </summary>
    void ReleaseSplitPage(NetMemRef page, long unusedReferences)
    {
        PagePool owner = OwnerOf(page);
        if (owner.UnrefPage(page, unusedReferences) == 0)
            owner.PutUnrefedPage(page, -1, allowDirect: true);
    }

    /// <summary>The live pool a page belongs to.</summary>
    /// <exception cref="InvalidOperationException">The page is no live pool's.</exception>
    protected static PagePool OwnerOf(NetMemRef page) =>
        PagePool.FromPage(page) ?? throw new InvalidOperationException($"Page {page} belongs to no live pool.");

    /// <summary>The pool's counters.</summary>
    PagePoolStats GetStats();

    /// <summary>Pages taken from the provider and not given back.</summary>
    long InFlight { get; }

    /// <summary>Whether the pool released its last page after <see cref="IDisposable.Dispose"/>.</summary>
    bool IsFreed { get; }
}

/// <summary>What a pool factory is given: the provider to draw from and the options of the run.</summary>
/// <param name="Provider">The provider (carrying the run's fault injector); the pool must not dispose it.</param>
/// <param name="Order">Allocation order.</param>
/// <param name="Name">A name for the pool.</param>
public sealed record StressPoolContext(PageProvider Provider, int Order, string Name);

/// <summary>The real <see cref="PagePool"/> behind <see cref="IStressPool"/>.</summary>
public sealed class PagePoolStressPool : IStressPool
{
    private readonly PagePool _pool;
    private readonly PagePoolConsumer _consumer;

    /// <summary>Creates a pool on the calling thread and binds that thread as its consumer.</summary>
    public PagePoolStressPool(StressPoolContext context)
    {
        _pool = new PagePool(new PagePoolOptions { Order = context.Order, Provider = context.Provider, Name = context.Name });
        _consumer = _pool.BindConsumer();
    }

    /// <summary>The pool.</summary>
    public PagePool Pool => _pool;

    /// <inheritdoc />
    public int BufferSize => _pool.BufferSize;

    /// <inheritdoc />
    public NetMemRef Alloc() => _pool.AllocPage();

    /// <inheritdoc />
    public void Put(NetMemRef page, bool allowDirect) => _pool.PutPage(page, -1, allowDirect);

    /// <inheritdoc />
    public NetMemRef AllocDirect() => _consumer.AllocPage();

    /// <inheritdoc />
    public void RecycleDirect(NetMemRef page) => _consumer.RecycleDirect(page);

    /// <inheritdoc />
    public int AllocBulk(Span<NetMemRef> pages) => _consumer.AllocPages(pages);

    /// <inheritdoc />
    public void PutBulk(ReadOnlySpan<NetMemRef> pages) => _pool.PutPages(pages);

#if HAS_FRAGMENTS
    /// <inheritdoc />
    public NetMemRef AllocFrag(int size, out int offset) => _consumer.AllocFrag(size, out offset);
#endif

    /// <inheritdoc />
    public void FragmentPage(NetMemRef page, long nr) => _pool.FragmentPage(page, nr);

    /// <inheritdoc />
    public void ReleaseSplitPage(NetMemRef page, long unusedReferences)
    {
        if (_pool.UnrefPage(page, unusedReferences) == 0)
            _consumer.PutUnrefedPage(page, -1, allowDirect: true);
    }

    /// <inheritdoc />
    public PagePoolStats GetStats() => _pool.GetStats();

    /// <inheritdoc />
    public long InFlight => _pool.InFlight;

    /// <inheritdoc />
    public bool IsFreed => _pool.IsFreed;

    /// <inheritdoc />
    public void Dispose() => _pool.Dispose();
}
