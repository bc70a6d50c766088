using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// A DMA mapper that counts every call per device address, so a test can show that each map is matched by exactly
/// one unmap, and that records the syncs for the CPU.
/// </summary>
internal sealed unsafe class CountingDmaMapper : IDmaMapper
{
    public const ulong DmaBase = 0x2_0000_0000_0000UL;

    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, int> _mapped = new();
    private readonly List<ulong> _doubleUnmaps = new();
    private readonly List<ulong> _strayUnmaps = new();
    public readonly List<(ulong Dma, nuint Size, DmaDirection Dir)> SyncsForCpu = new();

    public int Maps { get; private set; }
    public int Unmaps { get; private set; }

    /// <summary>Set to make the next unmaps throw (one each), as a failing IOMMU might.</summary>
    public int FailNextUnmaps { get; set; }

    public bool Map(void* address, nuint size, DmaDirection direction, out ulong dmaAddress)
    {
        dmaAddress = (ulong)address + DmaBase;
        lock (_lock)
        {
            Maps++;
            _mapped[dmaAddress] = _mapped.GetValueOrDefault(dmaAddress) + 1;
        }
        return true;
    }

    public void Unmap(ulong dmaAddress, nuint size, DmaDirection direction)
    {
        lock (_lock)
        {
            if (FailNextUnmaps > 0)
            {
                FailNextUnmaps--;
                throw new IOException($"unmap of 0x{dmaAddress:x} failed");
            }
            Unmaps++;
            if (!_mapped.TryGetValue(dmaAddress, out int n))
                _strayUnmaps.Add(dmaAddress);
            else if (n == 0)
                _doubleUnmaps.Add(dmaAddress);
            else
                _mapped[dmaAddress] = n - 1;
        }
    }

    public void SyncForDevice(ulong dmaAddress, nuint size, DmaDirection direction) { }

    public void SyncForCpu(ulong dmaAddress, nuint size, DmaDirection direction)
    {
        lock (_lock)
            SyncsForCpu.Add((dmaAddress, size, direction));
    }

    /// <summary>Mappings still up now.</summary>
    public int Live
    {
        get
        {
            lock (_lock)
                return _mapped.Values.Sum();
        }
    }

    /// <summary>Asserts that no address was unmapped twice or unmapped without a map, and that none is still mapped.</summary>
    public void AssertEveryMapUnmappedOnce()
    {
        lock (_lock)
        {
            Assert.Empty(_doubleUnmaps);
            Assert.Empty(_strayUnmaps);
            Assert.Equal(Maps, Unmaps);
            Assert.All(_mapped, kv => Assert.Equal(0, kv.Value));
        }
    }
}
