using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Native;

public sealed unsafe class PageRegionTests
{
    [Theory]
    [InlineData(16)]
    [InlineData(17)]
    [InlineData(18)]
    [InlineData(19)]
    [InlineData(20)]
    [InlineData(21)]
    [InlineData(22)]
    [InlineData(23)]
    public void A_region_of_each_size_has_its_table_in_its_first_pages(int shift)
    {
        using var region = new PageRegion(shift, hugePages: false);
        nuint size = (nuint)1 << shift;
        int pages = (int)(size >> PageConstants.PageShift);
        int tableBytes = pages * NetMem.Size;

        Assert.Equal(shift, region.Shift);
        Assert.Equal(size, region.Size);
        Assert.Equal(0, region.Base & (nint)(size - 1));
        Assert.Equal(pages, region.PageCount);
        Assert.Equal((tableBytes + PageConstants.PageSize - 1) / PageConstants.PageSize, region.HeaderPages);
        Assert.Equal(pages - region.HeaderPages, region.UsablePages);
        Assert.Equal((nint)region.Base, (nint)region.Descriptors);

        for (int i = 0; i < pages; i++)
        {
            NetMem* d = region.Descriptors + i;
            Assert.Equal(i < region.HeaderPages ? PageState.Header : PageState.Free, (PageState)d->State);
            Assert.Equal(shift, d->RegionShift);
            Assert.Equal(i, d->PageIndex);
            Assert.Equal(-1, d->MapCount);
            Assert.Equal(0, d->RefCount);
            Assert.Equal(0, d->Order);
        }
        Assert.Same(region, PageRegion.FromAddress((void*)region.Base));
        Assert.Same(region, PageRegion.FromAddress((byte*)region.Base + (nint)size - 1));
        Assert.False(region.IsDisposed);
    }

    [Theory]
    [InlineData(16, 1)]
    [InlineData(18, 1)]
    [InlineData(19, 2)]
    [InlineData(21, 8)]
    [InlineData(23, 32)]
    [InlineData(30, 4096)]
    public void HeaderPages_is_the_table_size_rounded_up_to_whole_pages(int shift, int expected)
    {
        // 2^(shift-12) descriptors of 64 bytes each.
        int pages = 1 << (shift - PageConstants.PageShift);
        Assert.Equal(expected, (pages * NetMem.Size + PageConstants.PageSize - 1) / PageConstants.PageSize);
        if (shift <= 23)
        {
            using var region = new PageRegion(shift, hugePages: false);
            Assert.Equal(expected, region.HeaderPages);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(12)]
    [InlineData(15)]
    [InlineData(31)]
    [InlineData(64)]
    [InlineData(-1)]
    public void A_shift_outside_16_to_30_is_refused(int shift)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageRegion(shift));
    }

    [Theory]
    [InlineData(-2)]
    [InlineData(64)]
    public void A_numa_node_outside_minus_1_to_63_is_refused(int node)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageRegion(numaNode: node));
    }

    [Fact]
    public void The_huge_page_advice_result_is_exposed_with_its_errno()
    {
        using var advised = new PageRegion(hugePages: true);
        if (advised.HugePagesAdvised)
            Assert.Equal(0, advised.HugePagesError);
        else if (OperatingSystem.IsLinux())
            Assert.NotEqual(0, advised.HugePagesError);

        using var plain = new PageRegion(hugePages: false);
        Assert.False(plain.HugePagesAdvised);
        Assert.Equal(0, plain.HugePagesError);
    }

    [Fact]
    public void The_lock_and_numa_results_are_exposed_with_their_errno()
    {
        using var region = new PageRegion(PageConstants.MinRegionShift, numaNode: 0, hugePages: false, lockMemory: true);
        Assert.Equal(0, region.NumaNode);
        if (region.Locked)
            Assert.Equal(0, region.LockError);
        else if (OperatingSystem.IsLinux())
            Assert.NotEqual(0, region.LockError);
        if (region.NumaBound)
            Assert.Equal(0, region.NumaError);
        else if (OperatingSystem.IsLinux())
            Assert.NotEqual(0, region.NumaError);
        Assert.Equal(0, region[region.HeaderPages].Nid);
    }

    [Fact]
    public void The_indexer_refuses_an_index_outside_the_region()
    {
        using var region = new PageRegion(PageConstants.MinRegionShift, hugePages: false);
        Assert.Throws<ArgumentOutOfRangeException>(() => region[-1]);
        Assert.Throws<ArgumentOutOfRangeException>(() => region[region.PageCount]);
        Assert.Equal(region.PageCount - 1, region[region.PageCount - 1].Index);
    }

    [Fact]
    public void Contains_covers_exactly_the_region_bytes()
    {
        using var region = new PageRegion(PageConstants.MinRegionShift, hugePages: false);
        byte* b = (byte*)region.Base;
        Assert.True(region.Contains(b));
        Assert.True(region.Contains(b + (nint)region.Size - 1));
        Assert.False(region.Contains(b + (nint)region.Size));
        Assert.False(region.Contains(b - 1));
    }

    [Fact]
    public void Discard_refuses_the_table_pages_and_ranges_past_the_end()
    {
        using var region = new PageRegion(PageConstants.MinRegionShift, hugePages: false);
        Assert.Throws<ArgumentOutOfRangeException>(() => region.Discard(0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.Discard(region.HeaderPages, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.Discard(region.HeaderPages, region.PageCount));
        region.PageAddress(region.HeaderPages)[0] = 7;
        bool discarded = region.Discard(region.HeaderPages, region.UsablePages);
        if (discarded)
            Assert.Equal(0, region.PageAddress(region.HeaderPages)[0]);
    }

    [Fact]
    public void Dispose_twice_is_harmless()
    {
        var region = new PageRegion(PageConstants.MinRegionShift, hugePages: false);
        region.Dispose();
        region.Dispose();
        Assert.True(region.IsDisposed);
    }
}
