using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Native;

public sealed unsafe class PageProviderTests
{
    [Fact]
    public void Take_hands_out_a_clean_page_with_one_reference()
    {
        using var provider = new PageProvider();
        NetMemRef page = provider.Take();
        Assert.False(page.IsNull);
        Assert.Equal(PageState.InUse, page.State);
        Assert.Equal(1, page.Value.RefCount);
        Assert.Equal(0, page.Value.PpRefCount);
        Assert.Equal(0UL, page.Value.PpMagic);
        Assert.Equal(0, page.Value.Pp);
        Assert.Equal(0UL, page.Value.DmaAddr);
        Assert.Equal(1, provider.PagesInUse);
        Assert.Equal(1, provider.RegionCount);
        Assert.Equal(1L << PageConstants.DefaultRegionShift, provider.BytesReserved);
        provider.Give(page);
        Assert.Equal(0, provider.PagesInUse);
    }

    [Fact]
    public void PagesInUse_counts_4_KiB_pages_of_every_order()
    {
        using var provider = new PageProvider();
        var runs = new NetMemRef[4];
        for (int order = 0; order < 4; order++)
            runs[order] = provider.Take(order);
        Assert.Equal(1 + 2 + 4 + 8, provider.PagesInUse);
        provider.GiveBulk(runs);
        Assert.Equal(0, provider.PagesInUse);
    }

    [Fact]
    public void An_order_or_node_out_of_range_is_refused()
    {
        using var provider = new PageProvider();
        Assert.Throws<ArgumentOutOfRangeException>(() => provider.Take(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => provider.Take(PageConstants.MaxOrder + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => provider.Take(0, nid: -2));
        Assert.Throws<ArgumentOutOfRangeException>(() => provider.Take(0, nid: 64));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageProvider(regionShift: 15));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageProvider(memoryLimit: -1));
    }

    [Fact]
    public void Take_after_Dispose_throws_ObjectDisposedException()
    {
        var provider = new PageProvider();
        provider.Dispose();
        Assert.Throws<ObjectDisposedException>(() => provider.Take());
    }

    // ---- bad input: refused with the address named, provider unchanged -------------------------------------------

    [Fact]
    public void Giving_a_page_back_twice_is_refused_and_names_the_page()
    {
        using var provider = new PageProvider();
        NetMemRef keep = provider.Take();
        NetMemRef page = provider.Take();
        provider.Give(page);

        var e = Assert.Throws<InvalidOperationException>(() => provider.Give(page));
        Assert.Contains($"0x{(nint)page.Address:x}", e.Message);
        AssertUnchangedAndWorking(provider, pagesInUse: 1);
        provider.Give(keep);
    }

    [Fact]
    public void Giving_back_a_page_of_another_provider_is_refused_and_names_the_page()
    {
        using var provider = new PageProvider();
        using var other = new PageProvider();
        NetMemRef keep = provider.Take();
        NetMemRef foreign = other.Take();

        var e = Assert.Throws<InvalidOperationException>(() => provider.Give(foreign));
        Assert.Contains($"0x{(nint)foreign.Address:x}", e.Message);
        AssertUnchangedAndWorking(provider, pagesInUse: 1);
        Assert.Equal(1, other.PagesInUse);
        Assert.Equal(PageState.InUse, foreign.State);
        other.Give(foreign);
        provider.Give(keep);
    }

    [Fact]
    public void Giving_back_null_is_refused()
    {
        using var provider = new PageProvider();
        NetMemRef keep = provider.Take();
        Assert.Throws<InvalidOperationException>(() => provider.Give(NetMemRef.Null));
        AssertUnchangedAndWorking(provider, pagesInUse: 1);
        provider.Give(keep);
    }

    [Fact]
    public void Giving_back_a_descriptor_outside_every_region_is_refused_and_names_the_pointer()
    {
        using var provider = new PageProvider();
        NetMemRef keep = provider.Take();
        NetMem fake = default;
        fake.State = (byte)PageState.InUse;
        var bogus = new NetMemRef(&fake);

        var e = Assert.Throws<InvalidOperationException>(() => provider.Give(bogus));
        Assert.Contains($"0x{(nint)(&fake):x}", e.Message);
        AssertUnchangedAndWorking(provider, pagesInUse: 1);
        provider.Give(keep);
    }

    [Fact]
    public void Giving_back_a_pointer_into_page_data_or_a_misaligned_descriptor_is_refused()
    {
        using var provider = new PageProvider();
        NetMemRef keep = provider.Take();
        var intoData = new NetMemRef((NetMem*)keep.Address);
        var misaligned = new NetMemRef((NetMem*)((byte*)keep.Descriptor + 8));

        var e = Assert.Throws<InvalidOperationException>(() => provider.Give(intoData));
        Assert.Contains($"0x{(nint)keep.Address:x}", e.Message);
        e = Assert.Throws<InvalidOperationException>(() => provider.Give(misaligned));
        Assert.Contains($"0x{(nint)misaligned.Descriptor:x}", e.Message);
        AssertUnchangedAndWorking(provider, pagesInUse: 1);
        provider.Give(keep);
    }

    [Fact]
    public void Giving_back_a_tail_page_or_a_table_page_is_refused()
    {
        using var provider = new PageProvider();
        NetMemRef run = provider.Take(order: 2);
        var tail = new NetMemRef(run.Descriptor + 1);
        PageRegion region = PageRegion.FromAddress(run.Address)!;

        var e = Assert.Throws<InvalidOperationException>(() => provider.Give(tail));
        Assert.Contains($"0x{(nint)tail.Address:x}", e.Message);
        e = Assert.Throws<InvalidOperationException>(() => provider.Give(region[0]));
        Assert.Contains($"0x{region.Base:x}", e.Message);
        AssertUnchangedAndWorking(provider, pagesInUse: 4);
        provider.Give(run);
    }

    [Fact]
    public void GiveBulk_with_one_bad_page_gives_none_back()
    {
        using var provider = new PageProvider();
        var pages = new NetMemRef[8];
        Assert.Equal(8, provider.TakeBulk(pages));
        NetMemRef freed = pages[5];
        provider.Give(freed);

        var e = Assert.Throws<InvalidOperationException>(() => provider.GiveBulk(pages));
        Assert.Contains($"0x{(nint)freed.Address:x}", e.Message);
        Assert.Equal(7, provider.PagesInUse);
        for (int i = 0; i < pages.Length; i++)
            Assert.Equal(i == 5 ? PageState.Free : PageState.InUse, pages[i].State);

        pages[5] = NetMemRef.Null;
        Assert.Throws<InvalidOperationException>(() => provider.GiveBulk(pages));
        Assert.Equal(7, provider.PagesInUse);

        pages[5] = pages[2];
        e = Assert.Throws<InvalidOperationException>(() => provider.GiveBulk(pages));
        Assert.Contains($"0x{(nint)pages[2].Address:x}", e.Message);
        Assert.Equal(7, provider.PagesInUse);

        provider.GiveBulk(pages.Where((_, i) => i != 5).ToArray());
        Assert.Equal(0, provider.PagesInUse);
    }

    // ---- out of memory -------------------------------------------------------------------------------------------

    [Fact]
    public void A_memory_limit_below_one_region_makes_Take_return_null()
    {
        using var provider = new PageProvider(memoryLimit: 4096);
        Assert.True(provider.Take().IsNull);
        Assert.Equal(1, provider.FailedAllocations);
        Assert.Equal(0, provider.InjectedFailures);
        Assert.Equal(0, provider.PagesInUse);
        Assert.Equal(0, provider.BytesReserved);
        Assert.Equal(0, provider.RegionCount);
    }

    [Fact]
    public void A_memory_limit_reached_mid_bulk_hands_out_what_fits()
    {
        using var provider = new PageProvider(PageConstants.MinRegionShift, hugePages: false, memoryLimit: 1L << PageConstants.MinRegionShift);
        var pages = new NetMemRef[100];
        int taken = provider.TakeBulk(pages);
        Assert.Equal(15, taken); // 16 pages, one of them the table
        Assert.Equal(1, provider.FailedAllocations);
        Assert.True(provider.Take().IsNull);
        Assert.Equal(2, provider.FailedAllocations);

        provider.MemoryLimit = 0;
        NetMemRef more = provider.Take();
        Assert.False(more.IsNull);
        Assert.Equal(2, provider.RegionCount);
        provider.Give(more);
        provider.GiveBulk(pages.AsSpan(0, taken));
        Assert.Equal(0, provider.PagesInUse);
    }

    [Fact]
    public void An_injected_fault_makes_Take_return_null_and_is_counted()
    {
        using var provider = new PageProvider { FaultInjector = new FailAfter(0) };
        Assert.True(provider.Take().IsNull);
        Assert.Equal(1, provider.InjectedFailures);
        Assert.Equal(1, provider.FailedAllocations);
        Assert.Equal(0, provider.PagesInUse);

        provider.FaultInjector = null;
        NetMemRef page = provider.Take();
        Assert.False(page.IsNull);
        provider.Give(page);
    }

    [Fact]
    public void An_injected_fault_mid_bulk_stops_the_bulk_there()
    {
        var injector = new FailAfter(5);
        using var provider = new PageProvider { FaultInjector = injector };
        var pages = new NetMemRef[16];
        Assert.Equal(5, provider.TakeBulk(pages, order: 1));
        Assert.Equal(10, provider.PagesInUse);
        Assert.Equal(1, provider.InjectedFailures);
        Assert.Equal(6, injector.Calls);
        Assert.All(pages[5..], p => Assert.True(p.IsNull));
        provider.GiveBulk(pages.AsSpan(0, 5));
    }

    [Fact]
    public void An_injected_fault_mid_bulk_on_the_cached_empty_region_keeps_that_region_alive()
    {
        using var provider = new PageProvider(hugePages: false);
        // Make the one region empty and cached.
        provider.Give(provider.Take());
        Assert.Equal(1, provider.RegionCount);

        // Take one page from the cached region, then fail.
        provider.FaultInjector = new FailAfter(1);
        var pages = new NetMemRef[4];
        Assert.Equal(1, provider.TakeBulk(pages));
        provider.FaultInjector = null;
        NetMemRef held = pages[0];
        PageRegion region = PageRegion.FromAddress(held.Address)!;

        // A run of another order must not re-cut the region that still has a page out.
        NetMemRef other = provider.Take(order: 1);
        Assert.False(other.IsNull);
        Assert.False(region.IsDisposed);
        Assert.Same(region, PageRegion.FromAddress(held.Address));
        Assert.Equal(held, NetMemRef.FromAddress(held.Address));
        Assert.Equal(2, provider.RegionCount);

        provider.Give(held);
        provider.Give(other);
        Assert.Equal(0, provider.PagesInUse);
    }

    private static void AssertUnchangedAndWorking(PageProvider provider, long pagesInUse)
    {
        Assert.Equal(pagesInUse, provider.PagesInUse);
        var pages = new NetMemRef[3];
        Assert.Equal(3, provider.TakeBulk(pages));
        Assert.Equal(pages.Length, pages.Distinct().Count());
        Assert.Equal(pagesInUse + 3, provider.PagesInUse);
        provider.GiveBulk(pages);
        NetMemRef one = provider.Take();
        provider.Give(one);
        Assert.Equal(pagesInUse, provider.PagesInUse);
    }

    /// <summary>Lets <c>n</c> runs through, then fails every one.</summary>
    private sealed class FailAfter(int n) : IAllocFaultInjector
    {
        public int Calls;

        public bool ShouldFail(int order) => Calls++ >= n;
    }
}
