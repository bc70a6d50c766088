using UnmanagedPool.Native;
using UnmanagedPool.Tests.Native;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// Issue 18 cases 3 and 4, in process now that they cannot fault: a region's memory stays mapped after its end,
/// its descriptors reading as zero, so a stale reference or a racing lookup is refused instead of faulting. Runs
/// alone (a region created beside it could reuse the retired memory).
/// </summary>
[Collection(RegionLifetimeCollection.Name)]
public sealed unsafe class RegionRetirementTests
{
    [Fact]
    public void A_NetMemRef_kept_past_its_pools_end_is_refused_by_every_check()
    {
        var pool = new PagePool(new PagePoolOptions { DebugMode = false });
        NetMemRef page = pool.AllocPage();
        byte* address = page.Address;
        pool.PutPage(page);
        pool.Dispose();
        Assert.True(pool.IsFreed);

        Assert.False(page.IsPagePool);
        Assert.Equal(PageState.Header, page.State);
        Assert.Equal(0UL, page.Value.PpMagic);
        Assert.Equal(0, page.Value.Pp);
        Assert.True(NetMemRef.FromAddress(address).IsNull);
        Assert.Null(PagePool.FromPage(page));
        Assert.Contains("freed", Assert.Throws<InvalidOperationException>(() => page.PutPage()).Message);
        Assert.Throws<InvalidOperationException>(() => page.GetPage());
        var packet = new Packet();
        packet.AddFrag(page, 0, 10);
        packet.MarkForRecycle();
        Assert.Throws<InvalidOperationException>(packet.Free);
        Assert.False(packet.IsLive);
    }

    [Fact]
    public void A_descriptor_found_before_the_region_ends_is_read_after_it_as_not_handed_out()
    {
        var region = new PageRegion(shift: 17, hugePages: false);
        byte* address = region.PageAddress(region.HeaderPages + 1) + 10;
        NetMem* slot = RegionRegistry.Lookup((nuint)address);
        Assert.True(slot != null);
        Assert.Equal(PageState.Free, new NetMemRef(slot).State);
        region.Dispose();
        // The rest of FromAddress after the region's end: a mapped, zeroed descriptor.
        Assert.Equal(PageState.Header, new NetMemRef(slot).State);
        Assert.False(new NetMemRef(slot).IsPagePool);
        Assert.True(RegionRegistry.Lookup((nuint)address) == null);
    }

    [Fact]
    public void A_retired_region_is_reused_by_the_next_region_of_its_size_with_a_fresh_table()
    {
        var first = new PageRegion(shift: 18, hugePages: false);
        nint firstBase = first.Base;
        first.PageAddress(first.HeaderPages)[0] = 0xee;
        first.Dispose();
        Assert.True(RegionMemory.RetiredBytes >= 1 << 18);
        // Oldest retired first: blocks retired by earlier tests come back before this one.
        var taken = new List<PageRegion>();
        try
        {
            PageRegion second;
            do
            {
                second = new PageRegion(shift: 18, hugePages: false);
                taken.Add(second);
            }
            while (second.Base != firstBase && taken.Count < 1000);
            Assert.Equal(firstBase, second.Base);
            Assert.Equal(PageState.Free, second[second.HeaderPages].State);
            Assert.Equal(18, second[second.HeaderPages].Value.RegionShift);
            Assert.Same(second, PageRegion.FromAddress(second.PageAddress(second.HeaderPages)));
            if (OperatingSystem.IsLinux())
                Assert.Equal(0, second.PageAddress(second.HeaderPages)[0]); // MADV_DONTNEED gave the page back
        }
        finally
        {
            foreach (PageRegion r in taken)
                r.Dispose();
        }
    }

    [Fact]
    public void An_area_that_is_not_a_PageRegion_registers_with_an_owner_and_resolves_addresses()
    {
        const int shift = 16;
        var owner = new object();
        byte* area = (byte*)RegionMemory.Allocate(shift);
        try
        {
            var table = (NetMem*)area;
            int pages = 1 << (shift - PageConstants.PageShift);
            for (int i = 0; i < pages; i++)
            {
                table[i] = default;
                table[i].RegionShift = shift;
                table[i].PageIndex = i;
                table[i].State = (byte)(i == 0 ? PageState.Header : PageState.InUse);
            }
            RegionRegistry.Register((nint)area, shift, owner);
            Assert.Throws<InvalidOperationException>(() => RegionRegistry.Register((nint)area, shift, owner));
            Assert.Throws<ArgumentOutOfRangeException>(() => RegionRegistry.Register((nint)area + 4096, shift, owner));
            Assert.Same(owner, RegionRegistry.FindOwner((nint)area));
            Assert.Null(RegionRegistry.Find((nint)area));
            NetMemRef page = NetMemRef.FromAddress(area + 3 * 4096 + 5);
            Assert.True(page.Descriptor == table + 3);
            Assert.True(page.Address == area + 3 * 4096);
            Assert.True(NetMemRef.FromAddress(area + 100).IsNull);
            RegionRegistry.Unregister((nint)area, shift);
            Assert.True(NetMemRef.FromAddress(area + 3 * 4096).IsNull);
            Assert.Null(RegionRegistry.FindOwner((nint)area));
        }
        finally
        {
            RegionMemory.Retire(area, shift);
        }
    }
}
