using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

public unsafe class OrderAndDmaTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void An_order_n_pool_hands_out_contiguous_runs_found_from_any_byte(int order)
    {
        using var pool = new PagePool(new PagePoolOptions { Order = order });
        int size = 4096 << order;
        Assert.Equal(size, pool.BufferSize);
        var pages = new NetMemRef[40];
        Assert.Equal(pages.Length, pool.AllocPages(pages));
        foreach (var p in pages)
        {
            Assert.Equal(size, p.Size);
            Assert.Equal(0, (nint)p.Address % size);
            Assert.Equal(p, NetMemRef.FromAddress(p.Address + size - 1));
            Assert.Equal(p, NetMemRef.FromAddress(p.Address + size / 2 + 7));
            p.AsSpan().Fill((byte)order);
        }
        Assert.Equal(pages.Length, pages.Select(p => (nint)p.Address).Distinct().Count());
        var s = pool.GetStats();
        Assert.Equal(pages.Length, s.AllocSlowHighOrder);
        Assert.Equal(0, s.AllocSlow);
        foreach (var p in pages)
            pool.PutPage(p.Address + 100, allowDirect: true);
        Assert.Equal(pages.Length, pool.GetStats().RecycleCached);
        var again = pool.AllocPage();
        Assert.Contains(again, pages);
        pool.RecycleDirect(again);
    }

    [Fact]
    public void Dma_mapping_maps_each_new_page_and_unmaps_it_on_release()
    {
        var mapper = new RecordingDmaMapper();
        var pool = new PagePool(new PagePoolOptions { Flags = PagePoolFlags.DmaMap, DmaMapper = mapper, DmaDirection = DmaDirection.Bidirectional });
        var page = pool.AllocPage();
        Assert.Equal(64, mapper.Maps.Count);
        Assert.Equal((ulong)page.Address + 0x1_0000_0000_0000UL, page.DmaAddr);
        Assert.All(mapper.Maps, m => Assert.Equal(DmaDirection.Bidirectional, m.Dir));
        Assert.All(mapper.Maps, m => Assert.Equal((nuint)4096, m.Size));
        pool.ReleasePage(page);
        Assert.Single(mapper.Unmaps);
        pool.Dispose();
        Assert.Equal(64, mapper.Unmaps.Count);
        Assert.Equal(mapper.Maps.Select(m => m.Dma).Order(), mapper.Unmaps.Select(m => m.Dma).Order());
    }

    [Fact]
    public void A_failed_mapping_gives_the_page_back_and_allocation_returns_null()
    {
        var mapper = new RecordingDmaMapper { FailMaps = true };
        using var pool = new PagePool(new PagePoolOptions { Flags = PagePoolFlags.DmaMap, DmaMapper = mapper });
        Assert.True(pool.AllocPage().IsNull);
        Assert.Equal(0, pool.GetStats().Hold);
        Assert.Equal(0, pool.Provider.PagesInUse);
        mapper.FailMaps = false;
        var page = pool.AllocPage();
        Assert.False(page.IsNull);
        pool.RecycleDirect(page);
    }

    [Theory]
    [InlineData(-1, 1500)]   // -1: MaxLen
    [InlineData(100, 100)]
    [InlineData(1499, 1499)]
    [InlineData(4000, 1500)] // clamped to MaxLen
    public void Dma_sync_size_offset_and_max_len_reach_the_mapper_on_recycle(int dmaSyncSize, int expectedSize)
    {
        var mapper = new RecordingDmaMapper();
        using var pool = new PagePool(new PagePoolOptions
        {
            Flags = PagePoolFlags.DmaMap | PagePoolFlags.DmaSyncDev,
            DmaMapper = mapper,
            MaxLen = 1500,
            Offset = 256,
        });
        var page = pool.AllocPage();
        int syncsAtSetup = mapper.SyncsForDevice.Count;
        Assert.Equal(64, syncsAtSetup); // every fresh page is handed to the device once
        pool.PutPage(page, dmaSyncSize, allowDirect: true);
        var sync = Assert.Single(mapper.SyncsForDevice.Skip(syncsAtSetup));
        Assert.Equal(page.DmaAddr + 256, sync.Dma);
        Assert.Equal((nuint)expectedSize, sync.Size);
        Assert.Equal(DmaDirection.FromDevice, sync.Dir);
    }

    [Fact]
    public void Put_full_page_syncs_max_len()
    {
        var mapper = new RecordingDmaMapper();
        using var pool = new PagePool(new PagePoolOptions { Flags = PagePoolFlags.DmaMap | PagePoolFlags.DmaSyncDev, DmaMapper = mapper, MaxLen = 2048 });
        var page = pool.AllocPage();
        int n = mapper.SyncsForDevice.Count;
        pool.PutFullPage(page);
        Assert.Equal((nuint)2048, mapper.SyncsForDevice[n].Size);
    }

    [Fact]
    public void The_init_callback_sees_every_new_page_with_its_argument()
    {
        var seen = new List<nint>();
        object arg = new();
        using var pool = new PagePool(new PagePoolOptions
        {
            InitCallback = (p, a) => { Assert.Same(arg, a); Assert.True(p.IsPagePool); seen.Add((nint)p.Address); },
            InitArg = arg,
        });
        var page = pool.AllocPage();
        Assert.Equal(64, seen.Count);
        Assert.Contains((nint)page.Address, seen);
        pool.RecycleDirect(page);
    }

    [Fact]
    public void An_offset_dma_mapper_names_pages_by_offset_from_the_region()
    {
        using var provider = new PageProvider();
        var probe = provider.Take();
        var region = PageRegion.FromAddress(probe.Address)!;
        provider.Give(probe);
        var mapper = new OffsetDmaMapper(region);
        using var pool = new PagePool(new PagePoolOptions { Provider = provider, Flags = PagePoolFlags.DmaMap, DmaMapper = mapper });
        var page = pool.AllocPage();
        Assert.Equal((ulong)((nint)page.Address - region.Base), page.DmaAddr);
        Assert.Equal((nint)page.Address, (nint)mapper.ToAddress(page.DmaAddr));
        pool.RecycleDirect(page);
    }
}
