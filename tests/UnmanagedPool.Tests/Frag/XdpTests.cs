using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Frag;

public unsafe class XdpTests
{
    private static PagePool NewPool() => new(new PagePoolOptions { PoolSize = 1024, DebugMode = false });

    private static XdpFrame Frame(PagePoolConsumer c, PagePool pool, int len = 100)
    {
        var page = c.AllocPage();
        var xdp = new XdpBuff();
        xdp.Init(page.Size, XdpMemInfo.ForPagePool(pool));
        xdp.Prepare(page.Address, Xdp.PacketHeadroom, len, metaValid: false);
        return xdp.ToFrame();
    }

    [Fact]
    public void A_buffer_converts_to_a_frame_written_into_its_headroom()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var page = c.AllocPage();
        var xdp = new XdpBuff();
        xdp.Init(4096, XdpMemInfo.ForPagePool(pool));
        xdp.Prepare(page.Address, Xdp.PacketHeadroom, 1000, metaValid: true);
        Assert.Equal(1000, xdp.Length);
        Assert.Equal(256, xdp.Headroom);
        Assert.Equal(0, xdp.MetaSize);
        xdp.DataMeta -= 16;
        var f = xdp.ToFrame();
        Assert.False(f.IsNull);
        Assert.True(f.IsLive);
        Assert.True(f.Data == page.Address + 256);
        Assert.Equal(1000, f.Length);
        Assert.Equal(16, f.MetaSize);
        Assert.Equal(256 - XdpFrame.DescriptorSize, f.Headroom);
        Assert.Equal(4096, f.FrameSize);
        Assert.Equal(XdpMemType.PagePool, f.MemType);
        Assert.Equal(page, f.Page);
        Xdp.ReturnFrame(f);
    }

    [Fact]
    public void A_buffer_without_room_for_the_frame_descriptor_does_not_convert()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var page = c.AllocPage();
        var xdp = new XdpBuff();
        xdp.Init(4096, XdpMemInfo.ForPagePool(pool));
        xdp.Prepare(page.Address, XdpFrame.DescriptorSize - 1, 100, metaValid: false);
        Assert.True(xdp.ToFrame().IsNull);
        c.RecycleDirect(page);
    }

    [Fact]
    public void ReturnFrame_recycles_through_the_ring_and_ReturnFrameRxNapi_into_the_alloc_cache()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var f1 = Frame(c, pool);
        var f2 = Frame(c, pool);
        var s0 = pool.GetStats();
        Xdp.ReturnFrame(f1);
        var s1 = pool.GetStats();
        Assert.Equal(s0.RecycleRing + 1, s1.RecycleRing);
        Assert.Equal(s0.RecycleCached, s1.RecycleCached);
        Assert.False(f1.IsLive);
        Xdp.ReturnFrameRxNapi(f2);
        var s2 = pool.GetStats();
        Assert.Equal(s1.RecycleCached + 1, s2.RecycleCached);
        Assert.Equal(s1.RecycleRing, s2.RecycleRing);
    }

    [Fact]
    public void ReturnFrameRxNapi_off_the_consumer_thread_takes_the_ring()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var f = Frame(c, pool);
        var s0 = pool.GetStats();
        var t = new Thread(() => Xdp.ReturnFrameRxNapi(f));
        t.Start(); t.Join();
        var s1 = pool.GetStats();
        Assert.Equal(s0.RecycleRing + 1, s1.RecycleRing);
        Assert.Equal(s0.RecycleCached, s1.RecycleCached);
    }

    [Fact]
    public void ReturnFrameBulk_puts_every_page_through_the_ring_in_batches()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        using var provider = new PageProvider(PageConstants.MinRegionShift);
        var frames = new XdpFrame[40];
        for (int i = 0; i < frames.Length; i++)
        {
            if (i % 8 == 7)
            {
                var foreign = provider.Take();
                var xdp = new XdpBuff();
                xdp.Init(4096, XdpMemInfo.PageShared);
                xdp.Prepare(foreign.Address, Xdp.PacketHeadroom, 64, metaValid: false);
                frames[i] = xdp.ToFrame();
            }
            else
            {
                frames[i] = Frame(c, pool);
            }
        }
        var s0 = pool.GetStats();
        Xdp.ReturnFrameBulk(frames);
        var s1 = pool.GetStats();
        Assert.Equal(s0.RecycleRing + 35, s1.RecycleRing);
        Assert.Equal(s0.RecycleCached, s1.RecycleCached);
        Assert.Equal(0, provider.PagesInUse);
        Assert.All(frames, f => Assert.False(f.IsLive));
    }

    [Fact]
    public void Returning_a_frame_twice_throws_and_leaves_the_pool_unharmed()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        var f = Frame(c, pool);
        Xdp.ReturnFrame(f);
        var s = pool.GetStats();
        var ex = Assert.Throws<InvalidOperationException>(() => Xdp.ReturnFrame(f));
        Assert.Contains("double return", ex.Message);
        Assert.Throws<InvalidOperationException>(() => Xdp.ReturnFrameRxNapi(f));
        Assert.Equal(s, pool.GetStats());

        var g = Frame(c, pool);
        var h = Frame(c, pool);
        var s2 = pool.GetStats();
        Assert.Throws<InvalidOperationException>(() => Xdp.ReturnFrameBulk(new[] { g, h, g }));
        Assert.Equal(s2, pool.GetStats());
        Assert.True(g.IsLive && h.IsLive);
        Xdp.ReturnFrameBulk(new[] { g, h });
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void Frames_cut_from_fragments_go_back_to_their_fragment_page()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        var frames = new XdpFrame[4];
        NetMemRef page = default;
        for (int i = 0; i < 4; i++)
        {
            page = c.AllocFrag(1024, out int off);
            var xdp = new XdpBuff();
            xdp.Init(1024, XdpMemInfo.ForPagePool(pool));
            xdp.Prepare(page.Address + off, Xdp.PacketHeadroom, 500, metaValid: false);
            frames[i] = xdp.ToFrame();
        }
        Xdp.ReturnFrameBulk(frames);
        Assert.Equal(PagePool.BiasMax - 4, page.Value.PpRefCount);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void ReturnFrameBulk_puts_runs_longer_than_a_bulk_queue_and_alternating_pools_each_to_its_own_pool()
    {
        // The common case batches a run of one pool's frames without a lookup per frame: a run longer than the
        // queue, pools alternating frame by frame, and a multi-buffer frame in a run must still all go back.
        using var a = NewPool();
        using var b = NewPool();
        var ca = a.BindConsumer();
        var cb = b.BindConsumer();
        var frames = new List<XdpFrame>();
        for (int i = 0; i < 3 * Xdp.BulkQueueSize + 5; i++)
            frames.Add(Frame(ca, a));
        for (int i = 0; i < 20; i++)
        {
            frames.Add(Frame(ca, a));
            frames.Add(Frame(cb, b));
        }
        for (int i = 0; i < Xdp.BulkQueueSize + 3; i++)
            frames.Add(Frame(cb, b));
        var multi = new XdpBuff();
        NetMemRef head = cb.AllocPage();
        multi.Init(head.Size, XdpMemInfo.ForPagePool(b));
        multi.Prepare(head.Address, Xdp.PacketHeadroom, 100, metaValid: false);
        Assert.True(multi.AddFrag(cb.AllocPage(), 0, 1000, 4096));
        Assert.True(multi.AddFrag(cb.AllocPage(), 0, 1000, 4096));
        frames.Insert(frames.Count - 4, multi.ToFrame());
        for (int i = 0; i < 4; i++)
            frames.Add(Frame(cb, b));
        XdpFrame[] all = frames.ToArray();
        var sa = a.GetStats();
        var sb = b.GetStats();

        OtherThread.Run(() => Xdp.ReturnFrameBulk(all));

        StatsAssert.Moved(sa, a.GetStats(), ("RecycleRing", 3 * Xdp.BulkQueueSize + 5 + 20));
        StatsAssert.Moved(sb, b.GetStats(), ("RecycleRing", 20 + Xdp.BulkQueueSize + 3 + 3 + 4));
        Assert.All(all, f => Assert.False(f.IsLive));
        Assert.Equal(0, a.InFlight - a.GetStats().Pooled);
        Assert.Equal(0, b.InFlight - b.GetStats().Pooled);
    }

    [Fact]
    public void ReturnFrameBulk_refuses_a_batch_with_a_frame_returned_before_and_puts_nothing_even_in_a_long_run()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        // 70 frames: past the 64 whose pages the claim pass looks up, and past several bulk queues.
        var frames = new XdpFrame[70];
        for (int i = 0; i < frames.Length; i++)
            frames[i] = Frame(c, pool);
        Xdp.ReturnFrame(frames[^1]);
        var s = pool.GetStats();
        Assert.Throws<InvalidOperationException>(() => Xdp.ReturnFrameBulk(frames));
        Assert.Equal(s, pool.GetStats());
        Assert.All(frames[..^1], f => Assert.True(f.IsLive));
        XdpFrame[] twice = [.. frames[..66], frames[2]];
        Assert.Throws<InvalidOperationException>(() => Xdp.ReturnFrameBulk(twice));
        Assert.Equal(s, pool.GetStats());
        Assert.All(frames[..^1], f => Assert.True(f.IsLive));
        Xdp.ReturnFrameBulk(frames.AsSpan(0, frames.Length - 1));
        Assert.Equal(0, pool.InFlight - pool.GetStats().Pooled);
    }

    [Fact]
    public void ReturnFrameBulk_sends_a_pool_frame_whose_page_is_not_a_pool_page_to_put_page()
    {
        // A frame marked MEM_TYPE_PAGE_POOL over a page not from a pool leaves the common case for put_page.
        using var pool = NewPool();
        var c = pool.BindConsumer();
        using var provider = new PageProvider(PageConstants.MinRegionShift);
        var foreign = provider.Take();
        var xdp = new XdpBuff();
        xdp.Init(4096, XdpMemInfo.ForPagePool(pool));
        xdp.Prepare(foreign.Address, Xdp.PacketHeadroom, 64, metaValid: false);
        var frames = new[] { Frame(c, pool), xdp.ToFrame(), Frame(c, pool) };
        var s = pool.GetStats();
        Xdp.ReturnFrameBulk(frames);
        StatsAssert.Moved(s, pool.GetStats(), ("RecycleRing", 2));
        Assert.Equal(0, provider.PagesInUse);
        Assert.All(frames, f => Assert.False(f.IsLive));
    }
}
