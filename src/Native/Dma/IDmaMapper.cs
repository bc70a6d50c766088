namespace UnmanagedPool.Native;

/// <summary>
/// Maps pages for a device, as the kernel's DMA API does for a page pool created with <c>PP_FLAG_DMA_MAP</c>.
/// Called on the pool's slow path (map, unmap) and on the put path (sync for device).
/// </summary>
public unsafe interface IDmaMapper
{
    /// <summary>The kernel's <c>dma_map_page_attrs</c>: maps <paramref name="size"/> bytes at <paramref name="address"/>.</summary>
    /// <returns>False when the mapping failed (the kernel's <c>dma_mapping_error</c>); the page is then not used.</returns>
    bool Map(void* address, nuint size, DmaDirection direction, out ulong dmaAddress);

    /// <summary>The kernel's <c>dma_unmap_page_attrs</c>.</summary>
    void Unmap(ulong dmaAddress, nuint size, DmaDirection direction);

    /// <summary>The kernel's <c>dma_sync_single_range_for_device</c>: hands the bytes to the device.</summary>
    void SyncForDevice(ulong dmaAddress, nuint size, DmaDirection direction);

    /// <summary>The kernel's <c>dma_sync_single_range_for_cpu</c>: hands the bytes back to the CPU.</summary>
    void SyncForCpu(ulong dmaAddress, nuint size, DmaDirection direction);
}
