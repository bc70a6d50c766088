namespace UnmanagedPool.Native;

/// <summary>
/// Where a page pool takes its memory from: the kernel's <c>struct memory_provider_ops</c>
/// (<c>alloc_netmems</c>, <c>release_netmem</c>, <c>init</c>, <c>destroy</c>). A pool calls it only on its slow
/// paths (a bulk refill, the release of a page, creation and final release); the fast path never sees it, and
/// the pool core never asks which provider it holds.
/// </summary>
/// <remarks>
/// Thread safety: <see cref="AllocBulk"/> and <see cref="Release"/> may be called from any thread, by several
/// pools at once when they share one provider. A page handed out carries <see cref="NetMem.RefCount"/> 1 and
/// zeroed pool fields; its last <see cref="NetMemRef.PutPage"/> gives it back to the provider that handed it out.
/// </remarks>
public interface IMemoryProvider
{
    /// <summary>Which kind of memory this provider hands out (recorded in every descriptor it hands out).</summary>
    MemoryProviderKind Kind { get; }

    /// <summary>
    /// The kernel's <c>init</c>: a pool is being created over this provider. Throws when the provider cannot
    /// serve such a pool (an order or a flag it does not support); the pool is then not created.
    /// </summary>
    /// <param name="pool">What the provider may need to know of the pool.</param>
    /// <exception cref="ArgumentException">The provider cannot serve a pool with these parameters.</exception>
    /// <exception cref="ObjectDisposedException">The provider has been disposed.</exception>
    void Init(in MemoryProviderBinding pool);

    /// <summary>
    /// The kernel's <c>alloc_netmems</c> in bulk: fills <paramref name="pages"/> with runs of
    /// 2^<paramref name="order"/> pages, each with <see cref="NetMem.RefCount"/> 1 and zeroed pool fields.
    /// </summary>
    /// <returns>How many were taken: fewer than asked (possibly 0) when the provider is exhausted.</returns>
    /// <exception cref="ObjectDisposedException">The provider has been disposed.</exception>
    int AllocBulk(Span<NetMemRef> pages, int order, int nid);

    /// <summary>
    /// The kernel's <c>release_netmem</c>: a pool is giving back a page it held (its pool fields already cleared).
    /// </summary>
    /// <returns>
    /// True when the pool is to drop its page reference (<see cref="NetMemRef.PutPage"/>), which gives the page
    /// back to its provider once no other reference remains; false when the provider took the page back itself
    /// and the pool must not touch it again.
    /// </returns>
    bool Release(NetMemRef page);

    /// <summary>
    /// The kernel's <c>destroy</c>: a pool created over this provider has released its last page and is freed.
    /// Called once for every successful <see cref="Init"/>.
    /// </summary>
    void Destroy(in MemoryProviderBinding pool);
}

/// <summary>Which provider a page came from: kept in the top byte of <see cref="NetMem.Flags"/> (as the kernel keeps a page's zone and node in its flags).</summary>
public enum MemoryProviderKind : byte
{
    /// <summary>A <see cref="PageProvider"/>: pages of ordinary regions the provider allocated itself.</summary>
    Region = 0,

    /// <summary>A <see cref="UmemProvider"/>: 4 KiB chunks of one registered area (an AF_XDP UMEM).</summary>
    Umem = 1,
}

/// <summary>What a memory provider learns about a pool bound to it (<see cref="IMemoryProvider.Init"/>).</summary>
/// <param name="Name">The pool's name, for messages.</param>
/// <param name="Order">The pool's allocation order.</param>
/// <param name="Nid">The NUMA node the pool allocates on, or -1.</param>
/// <param name="DmaMap">Whether the pool maps its pages itself (<c>PP_FLAG_DMA_MAP</c>).</param>
public readonly record struct MemoryProviderBinding(string? Name, int Order, int Nid, bool DmaMap);
