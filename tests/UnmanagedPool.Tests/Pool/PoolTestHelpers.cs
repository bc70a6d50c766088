using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

/// <summary>Records every DMA call so tests can check what reached the device.</summary>
internal sealed unsafe class RecordingDmaMapper : IDmaMapper
{
    public readonly List<(ulong Dma, nuint Size, DmaDirection Dir)> Maps = new();
    public readonly List<(ulong Dma, nuint Size, DmaDirection Dir)> Unmaps = new();
    public readonly List<(ulong Dma, nuint Size, DmaDirection Dir)> SyncsForDevice = new();
    public bool FailMaps { get; set; }

    public bool Map(void* address, nuint size, DmaDirection direction, out ulong dmaAddress)
    {
        dmaAddress = (ulong)address + 0x1_0000_0000_0000UL;
        if (FailMaps)
            return false;
        lock (Maps) Maps.Add((dmaAddress, size, direction));
        return true;
    }

    public void Unmap(ulong dmaAddress, nuint size, DmaDirection direction) { lock (Unmaps) Unmaps.Add((dmaAddress, size, direction)); }

    public void SyncForDevice(ulong dmaAddress, nuint size, DmaDirection direction) { lock (SyncsForDevice) SyncsForDevice.Add((dmaAddress, size, direction)); }

    public void SyncForCpu(ulong dmaAddress, nuint size, DmaDirection direction) { }
}

internal static class StatsAssert
{
    /// <summary>Asserts that exactly the named counters differ between two snapshots, by the given amounts.</summary>
    public static void Moved(PagePoolStats before, PagePoolStats after, params (string Name, long Delta)[] expected)
    {
        var want = expected.ToDictionary(e => e.Name, e => e.Delta);
        foreach (var prop in typeof(PagePoolStats).GetProperties())
        {
            if (prop.PropertyType != typeof(long) || prop.Name is nameof(PagePoolStats.Pooled) or nameof(PagePoolStats.InFlight))
                continue;
            long delta = (long)prop.GetValue(after)! - (long)prop.GetValue(before)!;
            long expectedDelta = want.TryGetValue(prop.Name, out long d) ? d : 0;
            Assert.True(expectedDelta == delta, $"{prop.Name}: expected +{expectedDelta}, moved {delta:+#;-#;0}");
        }
        foreach (var name in want.Keys)
            Assert.NotNull(typeof(PagePoolStats).GetProperty(name));
    }

    public static void Consistent(PagePoolStats s)
    {
        Assert.Equal(s.Hold - s.Release, s.InFlight);
        Assert.True(s.InFlight >= 0, $"InFlight {s.InFlight} < 0");
        Assert.True(s.AllocFast + s.AllocSlow * PagePool.AllocCacheRefill + s.AllocSlowHighOrder + s.AllocRefill * PagePool.AllocCacheRefill + 1
                    >= s.RecycleCached + s.RecycleRing - s.Release, "more recycles than allocations");
    }
}

/// <summary>Runs a body on a dedicated thread and rethrows its exception.</summary>
internal static class OtherThread
{
    public static void Run(Action body)
    {
        Exception? error = null;
        var t = new Thread(() => { try { body(); } catch (Exception e) { error = e; } });
        t.Start();
        t.Join();
        if (error != null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
    }

    public static T Run<T>(Func<T> body)
    {
        T result = default!;
        Run(() => { result = body(); });
        return result;
    }
}
