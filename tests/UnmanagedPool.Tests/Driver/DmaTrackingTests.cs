using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// DMA mappings tracked by the pool as the kernel does since 6.15 (<c>pool-&gt;dma_mapped</c>, <c>PP_DMA_INDEX</c>,
/// <c>page_pool_scrub</c>, <c>__page_pool_release_netmem_dma</c> in net/core/page_pool.c).
/// </summary>
public unsafe class DmaTrackingTests
{
    private static PagePool MappedPool(CountingDmaMapper mapper, bool debug = false) =>
        new(new PagePoolOptions { Flags = PagePoolFlags.DmaMap, DmaMapper = mapper, DebugMode = debug });

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Page_pool_scrub_unmaps_pages_in_flight_and_their_late_return_does_not_unmap_again(bool debug)
    {
        var mapper = new CountingDmaMapper();
        var pool = MappedPool(mapper, debug);
        var pages = new NetMemRef[5];
        Assert.Equal(5, pool.AllocPages(pages));
        Assert.Equal(64, mapper.Maps);
        Assert.Equal(64, pool.DmaMappedPages);
        pool.RecycleDirect(pages[4]);

        pool.Dispose();
        // Four pages are still out with users, yet no mapping is left.
        Assert.False(pool.IsFreed);
        Assert.Equal(4, pool.InFlight);
        Assert.Equal(0, pool.DmaMappedPages);
        Assert.Equal(0, mapper.Live);
        mapper.AssertEveryMapUnmappedOnce();

        for (int i = 0; i < 4; i++)
            pool.PutPage(pages[i]);
        Assert.True(pool.IsFreed);
        Assert.Equal(64, mapper.Unmaps);
        mapper.AssertEveryMapUnmappedOnce();
    }

    [Fact]
    public void Every_map_is_matched_by_exactly_one_unmap_across_releases_ring_full_and_dispose()
    {
        var mapper = new CountingDmaMapper();
        var pool = new PagePool(new PagePoolOptions { Flags = PagePoolFlags.DmaMap, DmaMapper = mapper, PoolSize = 4 });
        var pages = new NetMemRef[300];
        Assert.Equal(300, pool.AllocPages(pages));
        pool.ReleasePage(pages[0]);                 // page_pool_release_page: unmapped now
        Assert.Equal(1, mapper.Unmaps);
        for (int i = 1; i < 200; i++)
            pool.PutPage(pages[i]);                 // ring of 4: most are released (ring_full) and unmapped
        Assert.True(mapper.Unmaps > 100);
        Assert.Equal(mapper.Maps - mapper.Unmaps, pool.DmaMappedPages);
        Assert.Equal(mapper.Live, pool.DmaMappedPages);
        pool.Dispose();
        Assert.Equal(0, pool.DmaMappedPages);
        mapper.AssertEveryMapUnmappedOnce();
        OtherThread(() =>
        {
            for (int i = 200; i < 300; i++)
                pool.PutPage(pages[i]);
        });
        Assert.True(pool.IsFreed);
        mapper.AssertEveryMapUnmappedOnce();
    }

    [Fact]
    public void A_scrub_unmap_that_throws_leaves_the_mapping_recorded_and_the_late_return_takes_it_down()
    {
        var mapper = new CountingDmaMapper();
        var pool = MappedPool(mapper);
        var held = pool.AllocPage();
        var cached = new NetMemRef[63];
        Assert.Equal(63, pool.AllocPages(cached));
        foreach (var p in cached)
            pool.ReleasePage(p);                   // only the held page is still mapped
        Assert.Equal(1, pool.DmaMappedPages);
        mapper.FailNextUnmaps = 1;
        Assert.Throws<IOException>(() => pool.Dispose());
        Assert.Equal(1, pool.DmaMappedPages);      // back in the table: its mapping is still up
        Assert.Equal(1, mapper.Live);
        pool.PutPage(held);                       // the late return unmaps it, once
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.DmaMappedPages);
        mapper.AssertEveryMapUnmappedOnce();
    }

    [Fact]
    public void A_pool_that_does_not_map_tracks_nothing()
    {
        var mapper = new CountingDmaMapper();
        var pool = new PagePool(new PagePoolOptions { DmaMapper = mapper });
        var page = pool.AllocPage();
        Assert.Equal(0, pool.DmaMappedPages);
        pool.Dispose();
        pool.PutPage(page);
        Assert.True(pool.IsFreed);
        Assert.Equal(0, mapper.Maps);
        Assert.Equal(0, mapper.Unmaps);
    }

    [Fact]
    public void Slots_freed_by_releases_are_reused_so_the_table_does_not_grow_with_churn()
    {
        var mapper = new CountingDmaMapper();
        using var pool = new PagePool(new PagePoolOptions { Flags = PagePoolFlags.DmaMap, DmaMapper = mapper });
        for (int round = 0; round < 20; round++)
        {
            var page = pool.AllocPage();
            pool.ReleasePage(page);                 // out of the pool: the next slow path maps a new page
        }
        Assert.Equal(mapper.Maps - mapper.Unmaps, pool.DmaMappedPages);
        Assert.True(pool.DmaMappedPages <= 64, $"{pool.DmaMappedPages} mapped");
    }

    private static void OtherThread(Action body) => UnmanagedPool.Tests.Pool.OtherThread.Run(body);
}
