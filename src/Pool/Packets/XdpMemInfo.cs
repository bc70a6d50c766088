namespace UnmanagedPool;

/// <summary>The kernel's <c>enum xdp_mem_type</c>: who frees an XDP buffer's page.</summary>
public enum XdpMemType
{
    /// <summary><c>MEM_TYPE_PAGE_SHARED</c>: a page (or page fragment) not from a pool, dropped with <c>put_page</c>.</summary>
    PageShared = 0,

    /// <summary><c>MEM_TYPE_PAGE_ORDER0</c>: a whole order-0 page not from a pool, dropped with <c>put_page</c>.</summary>
    PageOrder0 = 1,

    /// <summary><c>MEM_TYPE_PAGE_POOL</c>: a page-pool page, returned to the pool its <c>pp</c> field names.</summary>
    PagePool = 2,
}

/// <summary>
/// The kernel's <c>struct xdp_mem_info</c> (an RX queue's <c>rxq-&gt;mem</c>): the memory type and, for
/// <see cref="XdpMemType.PagePool"/>, the pool (the kernel keeps an allocator id).
/// </summary>
public readonly struct XdpMemInfo
{
    /// <summary>Memory info of a type; <paramref name="pool"/> is required for <see cref="XdpMemType.PagePool"/>.</summary>
    /// <exception cref="ArgumentException">A pool type without a pool, or an unknown type.</exception>
    public XdpMemInfo(XdpMemType type, PagePool? pool = null)
    {
        if (!Enum.IsDefined(type))
            throw new ArgumentException($"Unknown XDP memory type {type}.", nameof(type));
        if (type == XdpMemType.PagePool && pool == null)
            throw new ArgumentException("MEM_TYPE_PAGE_POOL needs the pool.", nameof(pool));
        Type = type;
        PagePool = type == XdpMemType.PagePool ? pool : null;
    }

    /// <summary>The kernel's <c>xdp_rxq_info_reg_mem_model(MEM_TYPE_PAGE_POOL, pool)</c>.</summary>
    public static XdpMemInfo ForPagePool(PagePool pool) => new(XdpMemType.PagePool, pool ?? throw new ArgumentNullException(nameof(pool)));

    /// <summary>Memory info for pages not from a pool.</summary>
    public static XdpMemInfo PageShared => new(XdpMemType.PageShared);

    /// <summary>The memory type.</summary>
    public XdpMemType Type { get; }

    /// <summary>The pool, for <see cref="XdpMemType.PagePool"/>.</summary>
    public PagePool? PagePool { get; }

    /// <inheritdoc />
    public override string ToString() => PagePool == null ? Type.ToString() : $"{Type} {PagePool.Id}";
}
