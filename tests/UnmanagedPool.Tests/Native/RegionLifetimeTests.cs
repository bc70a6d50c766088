using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Native;

[Collection(RegionLifetimeCollection.Name)]
public sealed unsafe class RegionLifetimeTests
{
    [Fact]
    public void FromAddress_inside_a_disposed_region_is_null()
    {
        var region = new PageRegion(hugePages: false);
        byte* page = region.PageAddress(region.HeaderPages);
        byte* last = (byte*)region.Base + (nint)region.Size - 1;
        Assert.False(NetMemRef.FromAddress(page).IsNull);
        Assert.Same(region, PageRegion.FromAddress(page));

        region.Dispose();

        Assert.True(region.IsDisposed);
        Assert.True(NetMemRef.FromAddress(page).IsNull);
        Assert.True(NetMemRef.FromAddress(last).IsNull);
        Assert.True(NetMemRef.FromAddress((void*)region.Base).IsNull);
        Assert.Null(PageRegion.FromAddress(page));
    }

    [Fact]
    public void Regions_go_back_to_the_OS_when_all_their_pages_come_back_except_one_cached_empty_region()
    {
        using var provider = new PageProvider(hugePages: false);
        long regionBytes = 1L << PageConstants.DefaultRegionShift;

        NetMemRef[] first = NetMemRefTests.TakeWholeRegion(provider, order: 0, out PageRegion regionA);
        var second = new NetMemRef[first.Length];
        Assert.Equal(second.Length, provider.TakeBulk(second));
        PageRegion regionB = PageRegion.FromAddress(second[0].Address)!;
        Assert.NotSame(regionA, regionB);
        Assert.All(second, p => Assert.True(regionB.Contains(p.Address)));

        Assert.Equal(2, provider.RegionCount);
        Assert.Equal(2, provider.RegionsCreated);
        Assert.Equal(0, provider.RegionsFreed);
        Assert.Equal(2 * regionBytes, provider.BytesReserved);
        Assert.Equal(2L * first.Length, provider.PagesInUse);

        provider.GiveBulk(first);
        provider.GiveBulk(second);

        // The first region to empty is kept; the second is freed.
        Assert.Equal(0, provider.PagesInUse);
        Assert.Equal(1, provider.RegionCount);
        Assert.Equal(1, provider.RegionsFreed);
        Assert.Equal(regionBytes, provider.BytesReserved);
        Assert.False(regionA.IsDisposed);
        Assert.True(regionB.IsDisposed);
        Assert.Null(PageRegion.FromAddress(second[0].Address));
        Assert.True(NetMemRef.FromAddress(second[0].Address).IsNull);
        Assert.Same(regionA, PageRegion.FromAddress(first[0].Address));

        // The cached region serves the next take without a new region.
        NetMemRef again = provider.Take();
        Assert.True(regionA.Contains(again.Address));
        Assert.Equal(2, provider.RegionsCreated);
        provider.Give(again);

        Assert.Equal(regionBytes, provider.Trim());
        Assert.Equal(0, provider.RegionCount);
        Assert.Equal(2, provider.RegionsFreed);
        Assert.Equal(0, provider.BytesReserved);
        Assert.True(regionA.IsDisposed);
        Assert.Null(PageRegion.FromAddress(first[0].Address));
        Assert.True(NetMemRef.FromAddress(first[0].Address).IsNull);
    }

    [Fact]
    public void Dispose_with_pages_out_frees_each_region_when_its_last_page_comes_back()
    {
        var provider = new PageProvider(hugePages: false);
        NetMemRef page = provider.Take();
        PageRegion region = PageRegion.FromAddress(page.Address)!;

        provider.Dispose();
        Assert.False(region.IsDisposed);
        Assert.Equal(1, provider.RegionCount);

        Assert.True(page.PutPage());
        Assert.True(region.IsDisposed);
        Assert.Equal(0, provider.RegionCount);
        Assert.Equal(0, provider.BytesReserved);
        Assert.Null(PageRegion.FromAddress(page.Address));
    }
}
