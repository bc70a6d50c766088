using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// The kernel's <c>page_pool_dma_sync_for_cpu</c> / <c>page_pool_dma_sync_netmem_for_cpu</c>
/// (include/net/page_pool/helpers.h): <c>dma_sync_single_range_for_cpu(dev, dma_addr, offset + pool->p.offset,
/// size, dma_dir)</c> when the pool maps.
/// </summary>
public unsafe class SyncForCpuTests
{
    private static PagePool MappedPool(CountingDmaMapper mapper, int offset = 256, DmaDirection dir = DmaDirection.FromDevice) =>
        new(new PagePoolOptions { Flags = PagePoolFlags.DmaMap, DmaMapper = mapper, Offset = offset, DmaDirection = dir });

    [Fact]
    public void Page_pool_dma_sync_for_cpu_syncs_at_the_dma_address_plus_the_pool_offset_plus_the_offset()
    {
        var mapper = new CountingDmaMapper();
        using var pool = MappedPool(mapper, offset: 256, dir: DmaDirection.Bidirectional);
        var page = pool.AllocPage();
        var before = pool.GetStats();
        pool.SyncForCpu(page, 14, 1500);
        var sync = Assert.Single(mapper.SyncsForCpu);
        Assert.Equal(page.DmaAddr + 256 + 14, sync.Dma);
        Assert.Equal((nuint)1500, sync.Size);
        Assert.Equal(DmaDirection.Bidirectional, sync.Dir);
        StatsAssert.Moved(before, pool.GetStats()); // a sync moves no counter
        pool.RecycleDirect(page);
    }

    [Fact]
    public void A_sync_may_cover_the_whole_buffer_after_the_offset_and_no_more()
    {
        var mapper = new CountingDmaMapper();
        using var pool = MappedPool(mapper, offset: 256);
        var page = pool.AllocPage();
        pool.SyncForCpu(page, 0, 4096 - 256);
        pool.SyncForCpu(page, 4096 - 256, 0);
        Assert.Equal(2, mapper.SyncsForCpu.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.SyncForCpu(page, 0, 4096 - 255));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.SyncForCpu(page, 1, 4096 - 256));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.SyncForCpu(page, -1, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.SyncForCpu(page, 10, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.SyncForCpu(page, int.MaxValue, int.MaxValue));
        Assert.Equal(2, mapper.SyncsForCpu.Count);
        pool.RecycleDirect(page);
    }

    [Fact]
    public void A_pool_that_does_not_map_makes_the_sync_a_no_op()
    {
        // dma_sync_for_cpu is only set for PP_FLAG_DMA_MAP pools: the mapper is never called.
        var mapper = new CountingDmaMapper();
        using var pool = new PagePool(new PagePoolOptions { DmaMapper = mapper });
        var page = pool.AllocPage();
        pool.SyncForCpu(page, 0, 100);
        Assert.Empty(mapper.SyncsForCpu);
        Assert.Equal(0, mapper.Maps);
        pool.RecycleDirect(page);
    }

    [Fact]
    public void A_mapping_pool_refuses_to_sync_a_page_that_is_not_its_own_or_not_held()
    {
        var mapper = new CountingDmaMapper();
        using var pool = MappedPool(mapper);
        using var other = new PagePool(new PagePoolOptions());
        var foreign = other.AllocPage();
        Assert.Throws<InvalidOperationException>(() => pool.SyncForCpu(foreign, 0, 64));
        var page = pool.AllocPage();
        pool.RecycleDirect(page);
        Assert.Throws<InvalidOperationException>(() => pool.SyncForCpu(page, 0, 64)); // pp_ref_count 0: put already
        Assert.Empty(mapper.SyncsForCpu);
        other.RecycleDirect(foreign);
    }

    [Fact]
    public void After_dispose_a_page_in_flight_is_no_longer_synced_since_its_mapping_is_down()
    {
        var mapper = new CountingDmaMapper();
        var pool = MappedPool(mapper);
        var page = pool.AllocPage();
        pool.SyncForCpu(page, 0, 64);
        pool.Dispose();
        Assert.False(pool.IsFreed);
        pool.SyncForCpu(page, 0, 64);
        Assert.Single(mapper.SyncsForCpu);
        pool.PutPage(page);
        Assert.True(pool.IsFreed);
        mapper.AssertEveryMapUnmappedOnce();
    }
}
