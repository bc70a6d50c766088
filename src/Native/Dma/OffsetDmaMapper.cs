namespace UnmanagedPool.Native;

/// <summary>
/// A mapper that names each buffer by its byte offset from a registered base, the way AF_XDP names UMEM chunks
/// to the kernel: dma = address - base. Addresses outside [base, base + length) fail to map.
/// </summary>
public sealed unsafe class OffsetDmaMapper : IDmaMapper
{
    /// <summary>Registers the area that device addresses are offsets into.</summary>
    /// <param name="baseAddress">First byte of the area (offset 0).</param>
    /// <param name="length">Length of the area in bytes; must be positive.</param>
    public OffsetDmaMapper(void* baseAddress, nuint length)
    {
        if (baseAddress == null)
            throw new ArgumentNullException(nameof(baseAddress));
        if (length == 0)
            throw new ArgumentOutOfRangeException(nameof(length), "The area must not be empty.");
        Base = (nint)baseAddress;
        Length = length;
    }

    /// <summary>Registers a whole region: dma addresses are offsets from the region's base.</summary>
    public OffsetDmaMapper(PageRegion region) : this((void*)region.Base, region.Size) { }

    /// <summary>Address that maps to device address 0.</summary>
    public nint Base { get; }

    /// <summary>Length of the mapped area.</summary>
    public nuint Length { get; }

    /// <summary>The CPU address of a device address produced by this mapper.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The offset lies outside the area.</exception>
    public byte* ToAddress(ulong dmaAddress)
    {
        if (dmaAddress >= Length)
            throw new ArgumentOutOfRangeException(nameof(dmaAddress), $"Offset 0x{dmaAddress:x} is outside the {Length}-byte area.");
        return (byte*)Base + (nint)dmaAddress;
    }

    /// <inheritdoc />
    public bool Map(void* address, nuint size, DmaDirection direction, out ulong dmaAddress)
    {
        nuint offset = (nuint)address - (nuint)Base;
        if (direction == DmaDirection.None || offset >= Length || size > Length - offset)
        {
            dmaAddress = 0;
            return false;
        }
        dmaAddress = offset;
        return true;
    }

    /// <inheritdoc />
    public void Unmap(ulong dmaAddress, nuint size, DmaDirection direction) { }

    /// <inheritdoc />
    public void SyncForDevice(ulong dmaAddress, nuint size, DmaDirection direction) { }

    /// <inheritdoc />
    public void SyncForCpu(ulong dmaAddress, nuint size, DmaDirection direction) { }
}
