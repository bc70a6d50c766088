using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Hardening;

public unsafe class DebugModeTests
{
    private static PagePool NewPool(PagePoolDebugLevel level) => new(new PagePoolOptions { DebugLevel = level });

    [Fact]
    public void A_write_after_put_is_reported_on_the_next_allocation_with_the_page_address()
    {
        using var pool = NewPool(PagePoolDebugLevel.Simple);
        var consumer = pool.BindConsumer();
        NetMemRef page = consumer.AllocPage();
        nint address = (nint)page.Address;
        consumer.RecycleDirect(page);
        PageCorruptionEventArgs? seen = null;
        pool.CorruptionDetected += (_, e) => seen = e;

        ((byte*)address)[100] = 0x42;

        var ex = Assert.Throws<PageCorruptionException>(() => consumer.AllocPage());
        Assert.Equal(address, ex.PageAddress);
        Assert.Equal(100, ex.Offset);
        Assert.Equal(0x42, ex.Found);
        Assert.Contains($"0x{address:x}", ex.Message);
        Assert.Null(ex.PutStack);
        Assert.NotNull(seen);
        Assert.True(seen!.Thrown);
        Assert.Equal(1, pool.CorruptionsDetected);
        AssertConsistentAndUsable(pool, consumer);
    }

    [Fact]
    public void At_the_paranoid_level_the_report_names_where_the_page_was_put()
    {
        using var pool = NewPool(PagePoolDebugLevel.Paranoid);
        var consumer = pool.BindConsumer();
        NetMemRef page = consumer.AllocPage();
        PutFromAKnownPlace(pool, page);
        page.Address[7] = 1;
        var ex = Assert.Throws<PageCorruptionException>(() => consumer.AllocPage());
        Assert.NotNull(ex.PutStack);
        Assert.Contains(nameof(PutFromAKnownPlace), ex.PutStack);
        Assert.Contains(nameof(PutFromAKnownPlace), ex.Message);
        AssertConsistentAndUsable(pool, consumer);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void PutFromAKnownPlace(PagePool pool, NetMemRef page) => pool.RecycleDirect(page);

    [Fact]
    public void A_corrupted_page_in_a_bulk_allocation_loses_no_page()
    {
        using var pool = NewPool(PagePoolDebugLevel.Simple);
        var consumer = pool.BindConsumer();
        var pages = new NetMemRef[8];
        Assert.Equal(8, consumer.AllocPages(pages));
        foreach (var p in pages)
            consumer.RecycleDirect(p);
        pages[3].Address[4095] = 9;
        Assert.Throws<PageCorruptionException>(() => consumer.AllocPages(new NetMemRef[8]));
        AssertConsistentAndUsable(pool, consumer);
    }

    [Fact]
    public void A_write_after_put_found_when_the_page_leaves_the_pool_is_reported_without_throwing()
    {
        var pool = NewPool(PagePoolDebugLevel.Simple);
        var consumer = pool.BindConsumer();
        NetMemRef page = consumer.AllocPage();
        consumer.RecycleDirect(page);
        var seen = new List<PageCorruptionEventArgs>();
        pool.CorruptionDetected += (_, e) => seen.Add(e);
        nint address = (nint)page.Address;
        page.Address[0] = 0;
        pool.Dispose(); // frees the pool's own provider: the page is gone, use only its address from here

        Assert.True(pool.IsFreed);
        var e = Assert.Single(seen);
        Assert.False(e.Thrown);
        Assert.Equal(address, e.Corruption.PageAddress);
    }

    [Fact]
    public void Pages_handed_out_again_carry_the_poison_and_fresh_pages_do_not_need_it()
    {
        using var pool = NewPool(PagePoolDebugLevel.Simple);
        var consumer = pool.BindConsumer();
        NetMemRef page = consumer.AllocPage();
        page.AsSpan().Fill(1);
        consumer.RecycleDirect(page);
        Assert.Equal(-1, page.AsSpan().IndexOfAnyExcept(PagePool.PoisonFree));
        NetMemRef again = consumer.AllocPage();
        Assert.Equal(page, again);
        consumer.RecycleDirect(again);
    }

    [Fact]
    public void With_debug_mode_off_nothing_is_poisoned_or_tracked()
    {
        using var pool = new PagePool(new PagePoolOptions { DebugMode = false, DebugLevel = PagePoolDebugLevel.Off });
        var consumer = pool.BindConsumer();
        NetMemRef page = consumer.AllocPage();
        page.AsSpan().Fill(1);
        Assert.Equal(PagePoolDebugLevel.Off, pool.DebugLevel);
        Assert.Empty(pool.ReportLeaks());
        consumer.RecycleDirect(page);
        Assert.Equal(1, page.Address[0]);
    }

    [Fact]
    public void At_the_paranoid_level_every_page_in_flight_is_listed_with_its_allocation_stack()
    {
        var pool = NewPool(PagePoolDebugLevel.Paranoid);
        var consumer = pool.BindConsumer();
        var a = consumer.AllocPage();
        var b = consumer.AllocPage();
        var c = consumer.AllocPage();
        consumer.RecycleDirect(b);
        IReadOnlyList<PageLeakRecord> leaks = pool.ReportLeaks();
        Assert.Equal(new[] { (nint)a.Address, (nint)c.Address }.Order(), leaks.Select(l => l.Address).Order());
        Assert.All(leaks, l => Assert.Contains(nameof(At_the_paranoid_level_every_page_in_flight_is_listed_with_its_allocation_stack), l.AllocationStack));
        Assert.All(leaks, l => Assert.Equal(Environment.CurrentManagedThreadId, l.ThreadId));

        pool.Dispose();
        Assert.False(pool.IsFreed);
        string warning = pool.LeakDescriptionForTests();
        Assert.Contains("2 tracked page(s) in flight", warning);
        Assert.Contains($"0x{(nint)a.Address:x}", warning);
        pool.PutPage(a);
        pool.PutPage(c);
        Assert.True(pool.IsFreed);
        Assert.Empty(pool.ReportLeaks());
    }

    [Fact]
    public void At_the_simple_level_one_allocation_in_128_is_tracked()
    {
        using var pool = NewPool(PagePoolDebugLevel.Simple);
        var consumer = pool.BindConsumer();
        var pages = new NetMemRef[4 * PagePool.LeakSampleInterval];
        for (int i = 0; i < pages.Length; i++)
            pages[i] = consumer.AllocPage();
        IReadOnlyList<PageLeakRecord> leaks = pool.ReportLeaks();
        Assert.Equal(4, leaks.Count);
        Assert.Contains(leaks, l => l.Address == (nint)pages[0].Address);
        foreach (var p in pages)
            consumer.RecycleDirect(p);
        Assert.Empty(pool.ReportLeaks());
    }

    [Theory]
    [InlineData(null, PagePoolDebugLevel.Off)]
    [InlineData("", PagePoolDebugLevel.Off)]
    [InlineData("0", PagePoolDebugLevel.Off)]
    [InlineData("1", PagePoolDebugLevel.Simple)]
    [InlineData("true", PagePoolDebugLevel.Simple)]
    [InlineData("On", PagePoolDebugLevel.Simple)]
    [InlineData("simple", PagePoolDebugLevel.Simple)]
    [InlineData("paranoid", PagePoolDebugLevel.Paranoid)]
    [InlineData("PARANOID", PagePoolDebugLevel.Paranoid)]
    [InlineData("2", PagePoolDebugLevel.Paranoid)]
    public void The_environment_variable_value_selects_the_debug_level(string? value, PagePoolDebugLevel expected) =>
        Assert.Equal(expected, PagePoolEnvironment.ParseDebugLevel(value));

    [Fact]
    public void Choosing_a_debug_level_turns_debug_mode_on_and_debug_mode_alone_means_simple()
    {
        var options = new PagePoolOptions { DebugMode = false, DebugLevel = PagePoolDebugLevel.Off };
        options.DebugLevel = PagePoolDebugLevel.Paranoid;
        Assert.True(options.DebugMode);
        using (var pool = new PagePool(options))
            Assert.Equal(PagePoolDebugLevel.Paranoid, pool.DebugLevel);
        using (var pool = new PagePool(new PagePoolOptions { DebugLevel = PagePoolDebugLevel.Off, DebugMode = true }))
            Assert.Equal(PagePoolDebugLevel.Simple, pool.DebugLevel);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PagePoolOptions { DebugLevel = (PagePoolDebugLevel)7 });
    }

    internal static void AssertConsistentAndUsable(PagePool pool, PagePoolConsumer consumer, int held = 0)
    {
        PagePoolStats s = pool.GetStats();
        Assert.Equal(s.Hold - s.Release, pool.InFlight);
        Assert.Equal(held + s.Pooled, s.InFlight);
        var pages = new NetMemRef[300];
        for (int i = 0; i < pages.Length; i++)
        {
            pages[i] = consumer.AllocPage();
            Assert.False(pages[i].IsNull);
            pages[i].AsSpan().Fill((byte)i);
        }
        Assert.Equal(pages.Length, pages.Distinct().Count());
        foreach (var p in pages)
            consumer.RecycleDirect(p);
        s = pool.GetStats();
        Assert.Equal(held + s.Pooled, s.InFlight);
    }
}
