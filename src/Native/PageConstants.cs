namespace UnmanagedPool.Native;

/// <summary>Page geometry.</summary>
public static class PageConstants
{
    /// <summary>log2 of <see cref="PageSize"/>.</summary>
    public const int PageShift = 12;

    /// <summary>Size of one page: 4 KiB.</summary>
    public const int PageSize = 1 << PageShift;

    /// <summary>Largest order a run may have (the kernel's <c>MAX_PAGE_ORDER</c>): 2^10 pages, 4 MiB.</summary>
    public const int MaxOrder = 10;

    /// <summary>log2 of the smallest region: 64 KiB.</summary>
    public const int MinRegionShift = 16;

    /// <summary>log2 of the default region: 2 MiB, one transparent huge page on x86-64.</summary>
    public const int DefaultRegionShift = 21;

    /// <summary>log2 of the largest region: 1 GiB.</summary>
    public const int MaxRegionShift = 30;
}
