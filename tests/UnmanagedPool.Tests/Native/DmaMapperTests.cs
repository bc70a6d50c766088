using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Native;

public sealed unsafe class DmaMapperTests
{
    [Theory]
    [InlineData(DmaDirection.Bidirectional)]
    [InlineData(DmaDirection.ToDevice)]
    [InlineData(DmaDirection.FromDevice)]
    public void The_identity_mapper_maps_a_page_to_its_own_address(DmaDirection direction)
    {
        using var provider = new PageProvider();
        NetMemRef page = provider.Take();
        IDmaMapper mapper = IdentityDmaMapper.Instance;

        Assert.True(mapper.Map(page.Address, (nuint)page.Size, direction, out ulong dma));
        Assert.Equal((ulong)page.Address, dma);
        mapper.SyncForDevice(dma, (nuint)page.Size, direction);
        mapper.SyncForCpu(dma, (nuint)page.Size, direction);
        mapper.Unmap(dma, (nuint)page.Size, direction);
        provider.Give(page);
    }

    [Fact]
    public void The_identity_mapper_refuses_direction_none_and_null()
    {
        byte b = 0;
        Assert.False(IdentityDmaMapper.Instance.Map(&b, 1, DmaDirection.None, out _));
        Assert.False(IdentityDmaMapper.Instance.Map(null, 1, DmaDirection.FromDevice, out _));
    }

    [Fact]
    public void The_offset_mapper_maps_every_page_of_a_region_to_its_offset_and_back()
    {
        using var region = new PageRegion(hugePages: false);
        var mapper = new OffsetDmaMapper(region);
        Assert.Equal(region.Base, mapper.Base);
        Assert.Equal(region.Size, mapper.Length);

        for (int i = region.HeaderPages; i < region.PageCount; i++)
        {
            byte* address = region.PageAddress(i);
            Assert.True(mapper.Map(address, PageConstants.PageSize, DmaDirection.FromDevice, out ulong dma));
            Assert.Equal((ulong)((nint)address - region.Base), dma);
            Assert.Equal((ulong)i << PageConstants.PageShift, dma);
            Assert.Equal((nint)address, (nint)mapper.ToAddress(dma));
            Assert.Equal((nint)address + 17, (nint)mapper.ToAddress(dma + 17));
        }
    }

    [Fact]
    public void The_offset_mapper_refuses_addresses_outside_its_area_and_direction_none()
    {
        using var region = new PageRegion(PageConstants.MinRegionShift, hugePages: false);
        var mapper = new OffsetDmaMapper(region);
        byte* b = (byte*)region.Base;
        nint size = (nint)region.Size;

        Assert.False(mapper.Map(b - PageConstants.PageSize, PageConstants.PageSize, DmaDirection.FromDevice, out ulong dma));
        Assert.Equal(0UL, dma);
        Assert.False(mapper.Map(b + size, PageConstants.PageSize, DmaDirection.FromDevice, out _));
        Assert.False(mapper.Map(b + size - PageConstants.PageSize / 2, PageConstants.PageSize, DmaDirection.FromDevice, out _));
        Assert.False(mapper.Map(b, PageConstants.PageSize, DmaDirection.None, out _));
        Assert.True(mapper.Map(b + size - PageConstants.PageSize, PageConstants.PageSize, DmaDirection.ToDevice, out dma));
        Assert.Equal((ulong)(size - PageConstants.PageSize), dma);

        Assert.Throws<ArgumentOutOfRangeException>(() => { mapper.ToAddress((ulong)size); });
        Assert.Throws<ArgumentOutOfRangeException>(() => { mapper.ToAddress(ulong.MaxValue); });
    }

    [Fact]
    public void The_offset_mapper_refuses_a_null_base_or_an_empty_area()
    {
        byte b = 0;
        byte* p = &b;
        Assert.Throws<ArgumentNullException>(() => new OffsetDmaMapper(null, 4096));
        Assert.Throws<ArgumentOutOfRangeException>(() => new OffsetDmaMapper(p, 0));
    }

    [Fact]
    public void DmaDirection_has_the_kernel_values()
    {
        Assert.Equal(0, (int)DmaDirection.Bidirectional);
        Assert.Equal(1, (int)DmaDirection.ToDevice);
        Assert.Equal(2, (int)DmaDirection.FromDevice);
        Assert.Equal(3, (int)DmaDirection.None);
    }
}
