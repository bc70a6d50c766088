using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

/// <summary>Option validation, as the kernel's page_pool_init.</summary>
public class ValidationTests
{
    public static TheoryData<string, PagePoolOptions> InvalidOptions => new()
    {
        { "Flags", new PagePoolOptions { Flags = (PagePoolFlags)0x10 } },
        { "DmaDirection", new PagePoolOptions { Flags = PagePoolFlags.DmaMap, DmaDirection = DmaDirection.ToDevice } },
        { "DmaDirection", new PagePoolOptions { Flags = PagePoolFlags.DmaMap, DmaDirection = DmaDirection.None } },
        { "Flags", new PagePoolOptions { Flags = PagePoolFlags.DmaSyncDev, MaxLen = 2048 } },
        { "MaxLen", new PagePoolOptions { Flags = PagePoolFlags.DmaMap | PagePoolFlags.DmaSyncDev, MaxLen = 0 } },
        { "Order", new PagePoolOptions { Order = 11 } },
        { "Order", new PagePoolOptions { Order = -1 } },
        { "PoolSize", new PagePoolOptions { PoolSize = 0 } },
        { "NumaNode", new PagePoolOptions { NumaNode = -2 } },
        { "MaxLen", new PagePoolOptions { MaxLen = 4097 } },
        { "Offset", new PagePoolOptions { Offset = 256, MaxLen = 4000 } },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void An_invalid_option_is_rejected_with_an_argument_exception_naming_it(string option, PagePoolOptions options)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => new PagePool(options));
        Assert.Equal(option, e.ParamName);
    }

    [Fact]
    public void Null_options_are_rejected() => Assert.Throws<ArgumentNullException>(() => new PagePool(null!));

    [Fact]
    public void The_ring_size_is_clamped_to_16384()
    {
        using var pool = new PagePool(new PagePoolOptions { PoolSize = 100_000 });
        Assert.Equal(PagePoolOptions.MaxPoolSize, pool.PoolSize);
    }

    [Theory]
    [InlineData(DmaDirection.FromDevice)]
    [InlineData(DmaDirection.Bidirectional)]
    public void Dma_map_with_a_device_writable_direction_is_accepted(DmaDirection dir)
    {
        using var pool = new PagePool(new PagePoolOptions { Flags = PagePoolFlags.DmaMap | PagePoolFlags.DmaSyncDev, DmaDirection = dir, MaxLen = 4096 });
        Assert.Equal(dir, pool.Options.DmaDirection);
    }

    [Fact]
    public void Pool_ids_are_unique_and_names_default_to_the_id()
    {
        using var a = new PagePool(new PagePoolOptions());
        using var b = new PagePool(new PagePoolOptions { Name = "eth0-rx0" });
        Assert.NotEqual(a.Id, b.Id);
        Assert.Equal($"page_pool-{a.Id}", a.Name);
        Assert.Equal("eth0-rx0", b.Name);
    }
}
