namespace UnmanagedPool.Native;

/// <summary>The kernel's <c>enum dma_data_direction</c>, with the same values.</summary>
public enum DmaDirection
{
    /// <summary><c>DMA_BIDIRECTIONAL</c>: the device reads and writes the buffer.</summary>
    Bidirectional = 0,

    /// <summary><c>DMA_TO_DEVICE</c>: the device reads the buffer (TX).</summary>
    ToDevice = 1,

    /// <summary><c>DMA_FROM_DEVICE</c>: the device writes the buffer (RX).</summary>
    FromDevice = 2,

    /// <summary><c>DMA_NONE</c>: no transfer; invalid for mapping.</summary>
    None = 3,
}
