using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// Issue 18 case 10: a batch return that meets a DMA sync that throws still puts every frame or fragment, then
/// rethrows the first exception.
/// </summary>
public unsafe class ThrowingSyncReturnTests
{
    private sealed class SyncThrowsMapper : IDmaMapper
    {
        public volatile bool Throw;

        public bool Map(void* address, nuint size, DmaDirection direction, out ulong dmaAddress)
        {
            dmaAddress = (ulong)address;
            return true;
        }

        public void Unmap(ulong dmaAddress, nuint size, DmaDirection direction)
        {
        }

        public void SyncForDevice(ulong dmaAddress, nuint size, DmaDirection direction)
        {
            if (Throw)
                throw new IOException("sync for device failed (injected)");
        }

        public void SyncForCpu(ulong dmaAddress, nuint size, DmaDirection direction)
        {
        }
    }

    private static PagePool SyncPool(SyncThrowsMapper mapper) => new(new PagePoolOptions
    {
        Flags = PagePoolFlags.DmaMap | PagePoolFlags.DmaSyncDev,
        MaxLen = 2048,
        DmaMapper = mapper,
        DebugMode = false,
    });

    private static XdpFrame Frame(PagePool pool)
    {
        NetMemRef page = pool.AllocPage();
        var xdp = new XdpBuff();
        xdp.Init(page.Size, XdpMemInfo.ForPagePool(pool));
        xdp.Prepare(page.Address, Xdp.PacketHeadroom, 64, metaValid: false);
        return xdp.ToFrame();
    }

    [Fact]
    public void ReturnFrameBulk_puts_the_second_pools_frames_when_the_first_pools_sync_throws()
    {
        var mapper = new SyncThrowsMapper();
        var first = SyncPool(mapper);
        var second = new PagePool(new PagePoolOptions { DebugMode = false });
        var frames = new XdpFrame[6];
        for (int i = 0; i < 3; i++)
            frames[i] = Frame(first);
        for (int i = 3; i < 6; i++)
            frames[i] = Frame(second);
        mapper.Throw = true;
        Assert.Throws<IOException>(() => Xdp.ReturnFrameBulk(frames));
        Assert.All(frames, f => Assert.False(f.IsLive));
        Assert.Equal(0, second.InFlight - second.GetStats().Pooled);
        mapper.Throw = false;
        first.Dispose();
        second.Dispose();
        Assert.True(second.IsFreed, $"second pool: {second.InFlight} pages in flight");
        Assert.True(first.IsFreed, $"first pool: {first.InFlight} pages in flight");
    }

    [Fact]
    public void Packet_Free_puts_every_fragment_when_a_sync_throws()
    {
        var mapper = new SyncThrowsMapper();
        var pool = SyncPool(mapper);
        var packet = new Packet();
        for (int i = 0; i < 3; i++)
            packet.AddFrag(pool.AllocPage(), 0, 100);
        packet.MarkForRecycle();
        mapper.Throw = true;
        Assert.Throws<IOException>(packet.Free);
        mapper.Throw = false;
        Assert.False(packet.IsLive);
        // A page whose sync threw went back to the provider; none stays with the packet's user.
        Assert.Equal(0, pool.InFlight - pool.GetStats().Pooled);
        pool.Dispose();
        Assert.True(pool.IsFreed, $"{pool.InFlight} pages in flight");
    }
}
