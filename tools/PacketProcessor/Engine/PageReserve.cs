using UnmanagedPool;
using UnmanagedPool.Native;

namespace PacketProcessor.Engine;

/// <summary>
/// A queue's page allocator: the pages its pool may ever hold at once, taken from a <see cref="PageProvider"/>
/// before the queue receives, and kept on a free list when the pool gives them back (as the kernel's page
/// allocator keeps a freed page on its free lists). The pool's slow paths (a refill when its caches and ring are
/// empty, a put when its ring is full) then only move pages between the pool and this list: no region is created
/// or freed while the queue runs, so neither path allocates managed memory.
/// </summary>
/// <remarks>
/// A <see cref="PageProvider"/> frees a region once all its pages are back (keeping one empty region cached), and
/// creates one, with its managed bookkeeping, when it runs out: a pool whose ring overflows (a jumbo pass backlog
/// coming back at once) would otherwise give pages back and take them again through regions freed and created
/// over and over. Past the reserve (more pages out than <see cref="Capacity"/>) pages come from and go back to
/// the provider as before.
/// </remarks>
internal sealed unsafe class PageReserve : IMemoryProvider
{
    private readonly PageProvider _regions = new();
    // A spin lock, not a Lock: a contended Lock creates its wait event on first contention, an allocation on
    // whichever thread meets it first (the queue refilling while the worker overflows the ring), mid-run. Both
    // sides hold it for a few loads and stores.
    private SpinLock _lock = new(enableThreadOwnerTracking: false);
    private readonly nint[] _free;   // descriptors of the pages kept, RefCount 1 each
    private int _count;

    /// <summary>Takes <paramref name="capacity"/> pages now (fewer when memory runs out).</summary>
    public PageReserve(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _free = new nint[capacity];
        Span<NetMemRef> batch = stackalloc NetMemRef[64];
        while (_count < capacity)
        {
            int got = _regions.TakeBulk(batch[..Math.Min(batch.Length, capacity - _count)]);
            if (got == 0)
                break;
            for (int i = 0; i < got; i++)
                _free[_count++] = (nint)batch[i].Descriptor;
        }
    }

    /// <summary>Pages the reserve holds when every page is back.</summary>
    public int Capacity => _free.Length;

    /// <summary>Pages on the free list now.</summary>
    public int Free
    {
        get
        {
            bool taken = false;
            try
            {
                _lock.Enter(ref taken);
                return _count;
            }
            finally
            {
                if (taken)
                    _lock.Exit(useMemoryBarrier: false);
            }
        }
    }

    /// <summary>Ordinary region pages.</summary>
    public MemoryProviderKind Kind => MemoryProviderKind.Region;

    /// <summary>The reserve holds single pages: a pool of order 0 only.</summary>
    public void Init(in MemoryProviderBinding pool)
    {
        if (pool.Order != 0)
            throw new ArgumentException($"A page reserve serves order-0 pools (pool '{pool.Name}' has order {pool.Order}).", nameof(pool));
    }

    /// <summary>The kernel's <c>alloc_netmems</c>: pages off the free list, then from the provider past the reserve.</summary>
    public int AllocBulk(Span<NetMemRef> pages, int order, int nid)
    {
        int n;
        bool taken = false;
        try
        {
            _lock.Enter(ref taken);
            n = Math.Min(pages.Length, _count);
            for (int i = 0; i < n; i++)
            {
                var d = (NetMem*)_free[--_count];
                // As the provider hands a page out: one reference (the one kept), no pool fields.
                d->RefCount = 1;
                d->ClearPoolFields();
                d->Flags = 0;
                pages[i] = new NetMemRef(d);
            }
        }
        finally
        {
            if (taken)
                _lock.Exit(useMemoryBarrier: false);
        }
        return n == pages.Length ? n : n + _regions.TakeBulk(pages[n..], order, nid);
    }

    /// <summary>
    /// The kernel's <c>release_netmem</c>: a page only the pool referenced goes on the free list (false: the pool
    /// keeps off it); one someone else still references, or one past a full list, goes back through its reference.
    /// </summary>
    public bool Release(NetMemRef page)
    {
        NetMem* d = page.Descriptor;
        if (Volatile.Read(ref d->RefCount) != 1) // Volatile: another holder may drop its reference on its own thread
            return true;
        bool taken = false;
        try
        {
            _lock.Enter(ref taken);
            if (_count == _free.Length)
                return true;
            _free[_count++] = (nint)d;
            return false;
        }
        finally
        {
            if (taken)
                _lock.Exit(useMemoryBarrier: false);
        }
    }

    /// <summary>The pool is freed: every kept page goes back to the provider, which frees its regions.</summary>
    public void Destroy(in MemoryProviderBinding pool)
    {
        // The pool is freed: nothing allocates or releases any more, so the list is this thread's alone.
        Span<NetMemRef> batch = stackalloc NetMemRef[64];
        while (_count > 0)
        {
            int n = Math.Min(batch.Length, _count);
            for (int i = 0; i < n; i++)
                batch[i] = new NetMemRef((NetMem*)_free[--_count]);
            _regions.GiveBulk(batch[..n]);
        }
        _regions.Dispose();
    }
}
