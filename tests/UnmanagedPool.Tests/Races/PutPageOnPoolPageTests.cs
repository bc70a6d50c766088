using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// Issue 18 case 5: the pool's own page reference is never dropped behind its back. <see cref="NetMemRef.PutPage"/>
/// refuses to drop the last reference of a page that carries PP_SIGNATURE; a packet not marked for recycling
/// gives such a page back to its pool (as the kernel's <c>napi_pp_put_page</c>), and debug mode reports it.
/// </summary>
public unsafe class PutPageOnPoolPageTests
{
    [Fact]
    public void PutPage_on_a_whole_pool_page_is_refused_and_the_page_stays_the_pools()
    {
        var pool = new PagePool(new PagePoolOptions { DebugMode = false });
        NetMemRef page = pool.AllocPage();
        long inflight = pool.InFlight;
        Assert.Throws<InvalidOperationException>(() => page.PutPage());
        Assert.Equal(PageState.InUse, page.State);
        Assert.True(page.IsPagePool);
        Assert.Equal(1, page.Value.RefCount);
        Assert.Equal(inflight, pool.InFlight);
        // The page is not handed out again while its user holds it.
        var others = new List<NetMemRef>();
        for (int i = 0; i < 300; i++)
        {
            NetMemRef other = pool.AllocPage();
            Assert.NotEqual(page, other);
            others.Add(other);
        }
        foreach (NetMemRef o in others)
            pool.PutPage(o);
        pool.PutPage(page);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void PutPage_on_a_pool_fragment_page_is_refused_and_the_consumer_cuts_no_piece_twice()
    {
        var pool = new PagePool(new PagePoolOptions { DebugMode = false });
        NetMemRef frag = pool.AllocFrag(512, out int offset);
        Assert.Throws<InvalidOperationException>(() => frag.PutPage());
        Assert.Equal(PageState.InUse, frag.State);
        NetMemRef next = pool.AllocFrag(512, out int nextOffset);
        Assert.True(next != frag || nextOffset >= offset + 512);
        pool.PutPage(next);
        pool.PutPage(frag);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void PutPage_of_an_extra_reference_on_a_pool_page_still_drops_it()
    {
        using var pool = new PagePool(new PagePoolOptions { DebugMode = false });
        NetMemRef page = pool.AllocPage();
        Assert.Equal(2, page.GetPage());
        Assert.False(page.PutPage());
        Assert.Equal(1, page.Value.RefCount);
        Assert.True(page.IsPagePool);
        pool.PutPage(page);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_packet_not_marked_for_recycling_gives_a_pool_fragment_back_to_its_pool(bool wholePage)
    {
        var pool = new PagePool(new PagePoolOptions { DebugMode = false });
        int offset = 0;
        NetMemRef page = wholePage ? pool.AllocPage() : pool.AllocFrag(256, out offset);
        var packet = new Packet();
        packet.AddFrag(page, offset, 100);
        Assert.False(packet.PpRecycle);
        packet.Free();
        // Still the pool's: never given to the provider behind its back.
        Assert.Equal(PageState.InUse, page.State);
        Assert.True(page.IsPagePool);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void Debug_mode_reports_a_pool_page_in_a_packet_not_marked_for_recycling_after_giving_it_back()
    {
        var pool = new PagePool(new PagePoolOptions { DebugMode = true });
        NetMemRef frag = pool.AllocFrag(256, out int offset);
        NetMemRef page = pool.AllocPage();
        var packet = new Packet();
        packet.AddFrag(frag, offset, 100);
        packet.AddFrag(page, 0, 100);
        var e = Assert.Throws<InvalidOperationException>(packet.Free);
        Assert.Contains("recycl", e.Message);
        Assert.False(packet.IsLive);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_frame_marked_page_shared_over_a_pool_page_goes_back_to_its_pool(bool bulk)
    {
        var pool = new PagePool(new PagePoolOptions { DebugMode = false });
        NetMemRef page = pool.AllocPage();
        var xdp = new XdpBuff();
        xdp.Init(page.Size, XdpMemInfo.PageShared);
        xdp.Prepare(page.Address, Xdp.PacketHeadroom, 64, metaValid: false);
        XdpFrame frame = xdp.ToFrame();
        if (bulk)
            Xdp.ReturnFrameBulk([frame]);
        else
            Xdp.ReturnFrame(frame);
        Assert.Equal(PageState.InUse, page.State);
        Assert.True(page.IsPagePool);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }
}
