using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Native;

[Collection(RegionLifetimeCollection.Name)]
public unsafe class UmemProviderTests
{
    private const long SmallArea = 64 << 10; // 16 pages: one holds the descriptor table, 15 are chunks

    [Fact]
    public void A_pool_over_a_umem_hands_out_every_chunk_once_then_null_and_counts_the_failure()
    {
        using var umem = new UmemProvider(SmallArea);
        Assert.Equal(15, umem.ChunkCount);
        Assert.Equal(15L * 4096, umem.AreaSize);
        var pool = new PagePool(new PagePoolOptions { MemoryProvider = umem });
        var seen = new HashSet<ulong>();
        var held = new List<NetMemRef>();
        for (int i = 0; i < umem.ChunkCount; i++)
        {
            NetMemRef page = pool.AllocPage();
            Assert.False(page.IsNull);
            Assert.True(seen.Add(page.DmaAddr));
            Assert.Equal(MemoryProviderKind.Umem, page.ProviderKind);
            held.Add(page);
        }
        Assert.True(pool.AllocPage().IsNull);
        Assert.Equal(umem.ChunkCount, umem.ChunksInUse);
        PagePoolStats stats = pool.GetStats();
        Assert.True(stats.AllocFailed >= 1);
        Assert.True(umem.FailedAllocations >= 1);
        Assert.Equal(MemoryProviderKind.Umem, stats.MemoryProvider);
        Assert.Equal(seen.Count, seen.Count(d => d % 4096 == 0 && d < (ulong)umem.AreaSize));

        pool.RecycleDirect(held[3]);
        Assert.Equal(held[3], pool.AllocPage());
        foreach (NetMemRef page in held)
            pool.RecycleDirect(page);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, umem.ChunksInUse);
    }

    [Fact]
    public void Two_pools_share_one_umem_without_handing_out_a_chunk_twice_or_more_than_the_area_holds()
    {
        using var umem = new UmemProvider(SmallArea);
        var a = new PagePool(new PagePoolOptions { MemoryProvider = umem, Name = "rx0" });
        var b = new PagePool(new PagePoolOptions { MemoryProvider = umem, Name = "rx1" });
        var fromA = new NetMemRef[10];
        Assert.Equal(10, a.AllocPages(fromA));
        // a's bulk refill took every chunk (15 < 64): b starts dry until a gives some back.
        Assert.True(b.AllocPage().IsNull);
        var bStats = b.GetStats();
        Assert.Equal(1, bStats.AllocFailed);
        foreach (NetMemRef p in fromA)
            a.RecycleDirect(p);
        a.Dispose();
        Assert.True(a.IsFreed);
        Assert.Equal(0, umem.ChunksInUse);

        var fromB = new NetMemRef[umem.ChunkCount];
        Assert.Equal(umem.ChunkCount, b.AllocPages(fromB));
        Assert.Equal(umem.ChunkCount, fromB.Select(p => p.DmaAddr).Distinct().Count());
        Assert.All(fromB, p => Assert.True(p.IsPagePool));
        Assert.All(fromB, p => Assert.Equal(umem.OffsetOf(p), p.DmaAddr));
        foreach (NetMemRef p in fromB)
            b.RecycleDirect(p);
        b.Dispose();
        Assert.Equal(0, umem.ChunksInUse);
    }

    [Fact]
    public void FromAddress_and_FromOffset_find_a_umem_chunk_from_any_byte_inside_it_and_nothing_in_the_table()
    {
        using var umem = new UmemProvider(1 << 20);
        var pool = new PagePool(new PagePoolOptions { MemoryProvider = umem });
        var pages = new NetMemRef[40];
        Assert.Equal(40, pool.AllocPages(pages));
        foreach (NetMemRef page in pages)
        {
            byte* a = (byte*)page.Address;
            Assert.Equal(page, NetMemRef.FromAddress(a));
            Assert.Equal(page, NetMemRef.FromAddress(a + 256));
            Assert.Equal(page, NetMemRef.FromAddress(a + 4095));
            ulong offset = umem.OffsetOf(page);
            Assert.Equal(page, umem.FromOffset(offset + 256));
            Assert.Equal((nint)a, umem.Area + (nint)offset);
            // The descriptor lies outside the frame area: the whole chunk is frame.
            Assert.False((nuint)page.Descriptor - (nuint)umem.Area < (nuint)umem.AreaSize);
        }
        Assert.True(umem.FromOffset((ulong)umem.AreaSize).IsNull);
        Assert.True(NetMemRef.FromAddress((byte*)umem.Area - 64).IsNull); // the descriptor table
        foreach (NetMemRef page in pages)
            pool.RecycleDirect(page);
        pool.Dispose();
    }

    [Fact]
    public void Disposing_the_umem_with_chunks_in_flight_keeps_it_registered_until_the_last_one_comes_back()
    {
        var umem = new UmemProvider(SmallArea);
        var pool = new PagePool(new PagePoolOptions { MemoryProvider = umem });
        NetMemRef held = pool.AllocPage();
        nint address = (nint)held.Address;
        umem.Dispose();
        pool.Dispose();
        Assert.False(pool.IsFreed);
        Assert.False(umem.IsReleased);
        Assert.Equal(held, NetMemRef.FromAddress(address));
        held.AsSpan()[100] = 0x5a; // still mapped
        Assert.Throws<ObjectDisposedException>(() => umem.AllocBulk(new NetMemRef[1]));

        pool.PutPage(held);
        Assert.True(pool.IsFreed);
        Assert.True(umem.IsReleased);
        Assert.True(NetMemRef.FromAddress(address).IsNull);
    }

    [Fact]
    public void Huge_pages_come_from_MAP_HUGETLB_where_the_system_has_them_free_and_fall_back_to_THP_advice_cleanly_where_it_has_none()
    {
        const long size = 4 << 20;
        (long hugePageSize, long free) = HugePages();
        bool expectHugeTlb = OperatingSystem.IsLinux() && hugePageSize > 0 && free * hugePageSize >= size;
        using var umem = new UmemProvider(size);
        Assert.Equal(expectHugeTlb, umem.HugeTlbBacked);
        if (expectHugeTlb)
        {
            Assert.Equal(0, umem.HugeTlbError);
            Assert.False(umem.HugePagesAdvised); // explicit huge pages need no advice
        }
        else if (OperatingSystem.IsLinux() && hugePageSize > 0)
        {
            // vm.nr_hugepages 0 (or too few free): the MAP_HUGETLB mapping was refused, THP advice taken instead.
            Assert.Equal(12, umem.HugeTlbError); // ENOMEM
            Assert.True(umem.HugePagesAdvised);
        }

        // Either way the area works: every chunk is handed out, written end to end, found from its address, returned.
        var pool = new PagePool(new PagePoolOptions { MemoryProvider = umem, PoolSize = 64 });
        var held = new List<NetMemRef>();
        for (NetMemRef page = pool.AllocPage(); !page.IsNull; page = pool.AllocPage())
        {
            page.AsSpan().Fill((byte)held.Count);
            Assert.Equal(page, NetMemRef.FromAddress((byte*)page.Address + 4095));
            held.Add(page);
        }
        Assert.Equal(umem.ChunkCount, held.Count);
        for (int i = 0; i < held.Count; i++)
        {
            Assert.Equal((byte)i, held[i].AsSpan()[4095]);
            pool.RecycleDirect(held[i]);
        }
        pool.Dispose();
        umem.Dispose();
        Assert.True(umem.IsReleased);
    }

    /// <summary>The default huge page size and the free huge pages of that size (/proc/meminfo), 0 where absent.</summary>
    private static (long PageSize, long Free) HugePages()
    {
        long pageSize = 0, free = 0;
        if (!File.Exists("/proc/meminfo"))
            return (0, 0);
        foreach (string line in File.ReadLines("/proc/meminfo"))
        {
            string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 2)
                continue;
            if (parts[0] == "Hugepagesize:")
                pageSize = long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture) << 10;
            else if (parts[0] == "HugePages_Free:")
                free = long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
        }
        return (pageSize, free);
    }

    [Fact]
    public void A_socket_user_keeps_the_area_after_dispose_until_it_lets_go()
    {
        var umem = new UmemProvider(SmallArea);
        umem.AddUser();
        umem.Dispose();
        Assert.False(umem.IsReleased);
        umem.RemoveUser();
        Assert.True(umem.IsReleased);
    }

    [Fact]
    public void A_umem_refuses_pools_of_higher_order_or_with_dma_mapping_and_both_providers_at_once()
    {
        using var umem = new UmemProvider(SmallArea);
        Assert.Throws<ArgumentException>(() => new PagePool(new PagePoolOptions { MemoryProvider = umem, Order = 1 }));
        Assert.Throws<ArgumentException>(() => new PagePool(new PagePoolOptions
        {
            MemoryProvider = umem, Flags = PagePoolFlags.DmaMap, DmaDirection = DmaDirection.FromDevice,
        }));
        using var regions = new PageProvider();
        var e = Assert.Throws<ArgumentException>(() => new PagePool(new PagePoolOptions { MemoryProvider = umem, Provider = regions }));
        Assert.Equal(nameof(PagePoolOptions.MemoryProvider), e.ParamName);
        // Refused pools bound nothing: the area goes as soon as it is disposed.
        umem.Dispose();
        Assert.True(umem.IsReleased);
    }

    [Fact]
    public void A_region_pool_reports_the_region_provider_and_its_pages_say_so()
    {
        var pool = new PagePool(new PagePoolOptions());
        NetMemRef page = pool.AllocPage();
        Assert.Equal(MemoryProviderKind.Region, page.ProviderKind);
        Assert.Equal(MemoryProviderKind.Region, pool.GetStats().MemoryProvider);
        Assert.Same(pool.Provider, pool.MemoryProvider);
        pool.RecycleDirect(page);
        pool.Dispose();
    }
}
