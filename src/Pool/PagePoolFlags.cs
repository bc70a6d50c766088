namespace UnmanagedPool;

/// <summary>The kernel's <c>PP_FLAG_*</c> bits for <see cref="PagePoolOptions.Flags"/>.</summary>
[Flags]
public enum PagePoolFlags
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary><c>PP_FLAG_DMA_MAP</c>: the pool maps each page with <see cref="PagePoolOptions.DmaMapper"/> when it takes it and unmaps it when it releases it.</summary>
    DmaMap = 1 << 0,

    /// <summary><c>PP_FLAG_DMA_SYNC_DEV</c>: the pool syncs the written part of a page for the device when it is recycled.</summary>
    DmaSyncDev = 1 << 1,

    /// <summary>Every flag the pool knows.</summary>
    All = DmaMap | DmaSyncDev,
}
