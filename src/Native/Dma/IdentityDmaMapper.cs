namespace UnmanagedPool.Native;

/// <summary>A mapper for devices that see virtual addresses (or for no device): dma = virtual address; syncs are no-ops.</summary>
public sealed unsafe class IdentityDmaMapper : IDmaMapper
{
    /// <summary>The shared instance; the mapper has no state.</summary>
    public static IdentityDmaMapper Instance { get; } = new();

    /// <inheritdoc />
    public bool Map(void* address, nuint size, DmaDirection direction, out ulong dmaAddress)
    {
        dmaAddress = (ulong)address;
        return address != null && direction != DmaDirection.None;
    }

    /// <inheritdoc />
    public void Unmap(ulong dmaAddress, nuint size, DmaDirection direction) { }

    /// <inheritdoc />
    public void SyncForDevice(ulong dmaAddress, nuint size, DmaDirection direction) { }

    /// <inheritdoc />
    public void SyncForCpu(ulong dmaAddress, nuint size, DmaDirection direction) { }
}
