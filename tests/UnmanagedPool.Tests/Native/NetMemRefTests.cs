using System.Runtime.InteropServices;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Native;

public sealed unsafe class NetMemRefTests
{
    /// <summary>Byte offsets tried inside each page: the first, a middle and the last byte.</summary>
    private static readonly int[] s_offsetsInPage = [0, PageConstants.PageSize / 2, PageConstants.PageSize - 1];

    [Fact]
    public void FromAddress_returns_the_page_for_the_first_middle_and_last_byte_of_every_page_of_a_region()
    {
        using var provider = new PageProvider();
        var pages = TakeWholeRegion(provider, order: 0, out PageRegion region);
        Assert.Equal(region.UsablePages, pages.Length);

        foreach (NetMemRef page in pages)
            foreach (int offset in s_offsetsInPage)
                Assert.Equal(page, NetMemRef.FromAddress(page.Address + offset));

        provider.GiveBulk(pages);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void FromAddress_returns_the_head_for_every_byte_position_of_every_page_of_an_order_n_run(int order)
    {
        using var provider = new PageProvider();
        var runs = TakeWholeRegion(provider, order, out _);
        Assert.NotEmpty(runs);

        foreach (NetMemRef head in runs)
        {
            Assert.Equal(order, head.Order);
            Assert.Equal(PageState.InUse, head.State);
            for (int p = 0; p < 1 << order; p++)
            {
                byte* page = head.Address + (p << PageConstants.PageShift);
                foreach (int offset in s_offsetsInPage)
                    Assert.Equal(head, NetMemRef.FromAddress(page + offset));
            }
        }

        provider.GiveBulk(runs);
    }

    [Fact]
    public void FromAddress_returns_the_head_for_every_byte_of_an_order_3_run()
    {
        using var provider = new PageProvider();
        NetMemRef head = provider.Take(order: 3);
        Assert.False(head.IsNull);
        for (int i = 0; i < head.Size; i++)
            Assert.Equal(head, NetMemRef.FromAddress(head.Address + i));
        provider.Give(head);
    }

    [Fact]
    public void FromAddress_of_a_null_pointer_is_null()
    {
        Assert.Equal(NetMemRef.Null, NetMemRef.FromAddress((void*)null));
        Assert.Equal(NetMemRef.Null, NetMemRef.FromAddress((nint)0));
    }

    [Fact]
    public void FromAddress_of_a_stack_address_is_null()
    {
        byte* stack = stackalloc byte[256];
        Assert.True(NetMemRef.FromAddress(stack).IsNull);
        Assert.True(NetMemRef.FromAddress(stack + 255).IsNull);
    }

    [Fact]
    public void FromAddress_of_an_aligned_block_that_is_not_a_region_is_null()
    {
        nuint size = (nuint)1 << PageConstants.DefaultRegionShift;
        byte* block = (byte*)NativeMemory.AlignedAlloc(size, size);
        try
        {
            for (nuint offset = 0; offset < size; offset += PageConstants.PageSize)
                Assert.True(NetMemRef.FromAddress(block + offset).IsNull);
            Assert.True(NetMemRef.FromAddress(block + size - 1).IsNull);
            Assert.Null(PageRegion.FromAddress(block));
        }
        finally
        {
            NativeMemory.AlignedFree(block);
        }
    }

    [Theory]
    [InlineData(16)]
    [InlineData(21)]
    [InlineData(23)]
    public void FromAddress_inside_the_descriptor_table_pages_is_null(int shift)
    {
        using var region = new PageRegion(shift, hugePages: false);
        byte* tableEnd = (byte*)region.Base + (region.HeaderPages << PageConstants.PageShift);
        for (byte* p = (byte*)region.Base; p < tableEnd; p += PageConstants.PageSize / 2)
            Assert.True(NetMemRef.FromAddress(p).IsNull);
        Assert.True(NetMemRef.FromAddress(tableEnd - 1).IsNull);
        Assert.False(NetMemRef.FromAddress(tableEnd).IsNull);
    }

    [Fact]
    public void A_page_knows_its_address_size_index_and_region()
    {
        using var region = new PageRegion(hugePages: false);
        for (int i = region.HeaderPages; i < region.PageCount; i++)
        {
            NetMemRef page = region[i];
            Assert.Equal((nint)region.PageAddress(i), (nint)page.Address);
            Assert.Equal(region.Base + i * PageConstants.PageSize, (nint)page.Address);
            Assert.Equal(i, page.Index);
            Assert.Equal(region.Base, page.RegionBase);
            Assert.Equal(PageConstants.PageSize, page.Size);
            Assert.Equal(PageConstants.PageSize, page.AsSpan().Length);
            Assert.Equal(PageState.Free, page.State);
            Assert.Equal(-1, page.Nid);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(10)]
    public void Size_and_span_cover_the_whole_run(int order)
    {
        using var provider = new PageProvider();
        NetMemRef run = provider.Take(order);
        Assert.False(run.IsNull);
        Assert.Equal(PageConstants.PageSize << order, run.Size);
        Span<byte> span = run.AsSpan();
        Assert.Equal(run.Size, span.Length);
        span.Fill(0xA5);
        Assert.True(span.IndexOfAnyExcept((byte)0xA5) < 0);
        Assert.Equal(0, (nint)run.Address & ((PageConstants.PageSize << order) - 1));
        provider.Give(run);
    }

    [Fact]
    public void IsPagePool_follows_the_pp_magic_signature_under_its_mask()
    {
        using var provider = new PageProvider();
        NetMemRef page = provider.Take();
        Assert.False(page.IsPagePool);

        page.Value.PpMagic = NetMemRef.PpSignature;
        Assert.True(page.IsPagePool);
        page.Value.PpMagic = NetMemRef.PpSignature | 0x3;
        Assert.True(page.IsPagePool);
        page.Value.PpMagic = NetMemRef.PpSignature | 0x4;
        Assert.False(page.IsPagePool);
        page.Value.PpMagic = 0;
        Assert.False(page.IsPagePool);

        Assert.Equal(0xdead000000000040UL, NetMemRef.PpSignature);
        provider.Give(page);
    }

    [Fact]
    public void DmaAddr_reads_the_descriptor_field()
    {
        using var provider = new PageProvider();
        NetMemRef page = provider.Take();
        Assert.Equal(0UL, page.DmaAddr);
        page.Value.DmaAddr = 0x1234_5000;
        Assert.Equal(0x1234_5000UL, page.DmaAddr);
        Assert.Equal(0x1234_5000UL, page.Descriptor->DmaAddr);
        provider.Give(page);
    }

    [Fact]
    public void References_are_equal_exactly_when_they_name_the_same_descriptor()
    {
        using var region = new PageRegion(hugePages: false);
        NetMemRef a = region[region.HeaderPages];
        NetMemRef b = new(region.Descriptors + region.HeaderPages);
        NetMemRef c = region[region.HeaderPages + 1];

        Assert.True(a == b);
        Assert.False(a != b);
        Assert.True(a.Equals(b));
        Assert.True(a.Equals((object)b));
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.True(a != c);
        Assert.False(a.Equals(c));
        Assert.False(a.Equals((object)"page"));
        Assert.NotEqual(NetMemRef.Null, a);
        Assert.True(NetMemRef.Null.IsNull);
        Assert.Equal(default, NetMemRef.Null);
        Assert.Equal("NetMemRef(null)", NetMemRef.Null.ToString());
        Assert.Contains($"0x{(nint)a.Address:x}", a.ToString());
    }

    [Fact]
    public void GetPage_and_PutPage_count_references_and_the_last_put_gives_the_page_back()
    {
        using var provider = new PageProvider();
        NetMemRef page = provider.Take();
        Assert.Equal(1, page.Value.RefCount);
        Assert.Same(provider, PageProvider.OwnerOf(page));

        Assert.Equal(2, page.GetPage());
        Assert.Equal(3, page.GetPage());
        Assert.False(page.PutPage());
        Assert.False(page.PutPage());
        Assert.Equal(1, provider.PagesInUse);

        Assert.True(page.PutPage());
        Assert.Equal(0, provider.PagesInUse);
        Assert.Equal(PageState.Free, page.State);

        // The page is free now: another put or get is refused and changes nothing.
        Assert.Throws<InvalidOperationException>(() => page.PutPage());
        Assert.Throws<InvalidOperationException>(() => page.GetPage());
        Assert.Equal(0, provider.PagesInUse);

        NetMemRef again = provider.Take();
        Assert.Equal(page, again);
        Assert.Equal(1, again.Value.RefCount);
        provider.Give(again);
    }

    [Fact]
    public void PutPage_of_an_order_n_run_gives_the_whole_run_back()
    {
        using var provider = new PageProvider();
        NetMemRef run = provider.Take(order: 2);
        Assert.Equal(4, provider.PagesInUse);
        Assert.True(run.PutPage());
        Assert.Equal(0, provider.PagesInUse);
    }

    [Fact]
    public void GetPage_and_PutPage_on_null_throw()
    {
        Assert.Throws<InvalidOperationException>(() => NetMemRef.Null.GetPage());
        Assert.Throws<InvalidOperationException>(() => NetMemRef.Null.PutPage());
    }

    /// <summary>
    /// Takes every run of <paramref name="order"/> that one fresh region holds, from a provider that has no region
    /// yet, and checks they all came from that one region.
    /// </summary>
    internal static NetMemRef[] TakeWholeRegion(PageProvider provider, int order, out PageRegion region)
    {
        Assert.Equal(0, provider.RegionCount);
        NetMemRef first = provider.Take(order);
        Assert.False(first.IsNull);
        region = PageRegion.FromAddress(first.Address)!;
        Assert.NotNull(region);
        int blockPages = 1 << order;
        int firstBlock = (region.HeaderPages + blockPages - 1) & ~(blockPages - 1);
        int runs = (region.PageCount - firstBlock) >> order;

        var pages = new NetMemRef[runs];
        pages[0] = first;
        Assert.Equal(runs - 1, provider.TakeBulk(pages.AsSpan(1), order));
        Assert.Equal(1, provider.RegionCount);
        foreach (NetMemRef page in pages)
            Assert.True(region.Contains(page.Address));
        Assert.Equal(pages.Length, pages.Distinct().Count());
        return pages;
    }
}
