using System.Runtime.CompilerServices;
using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// Multi-buffer XDP as the kernel has it (include/net/xdp.h, net/core/xdp.c) and as mvneta builds it
/// (mvneta_swbm_add_rx_fragment, mvneta_xdp_put_buff): the head buffer's tailroom holds the fragment list
/// (<c>skb_shared_info</c> after <c>xdp_data_hard_end</c>), and every return path gives back the head and every
/// fragment.
/// </summary>
public unsafe class MultiBufferXdpTests
{
    private const int Headroom = Xdp.PacketHeadroom;

    private static PagePool NewPool() => new(new PagePoolOptions { PoolSize = 1024, DebugMode = false });

    /// <summary>A head of <paramref name="headLen"/> bytes plus <paramref name="frags"/> whole-page fragments of <paramref name="fragLen"/> bytes.</summary>
    private static XdpBuff Build(PagePool pool, int headLen, int frags, int fragLen = 4000)
    {
        NetMemRef head = pool.AllocPage();
        XdpBuff xdp = default;
        xdp.Init(head.Size, XdpMemInfo.ForPagePool(pool));
        xdp.Prepare(head.Address, Headroom, headLen, metaValid: false);
        for (int i = 0; i < frags; i++)
        {
            NetMemRef page = pool.AllocPage();
            Assert.True(xdp.AddFrag(page, 0, fragLen, page.Size));
        }
        return xdp;
    }

    private static void AssertAllBack(PagePool pool) => Assert.Equal(0, pool.InFlight - pool.GetStats().Pooled);

    [Fact]
    public void Xdp_buff_add_frag_writes_the_list_at_xdp_data_hard_end_and_xdp_get_buff_len_counts_every_fragment()
    {
        using var pool = NewPool();
        XdpBuff xdp = Build(pool, headLen: 1000, frags: 0);
        Assert.False(xdp.HasFrags);
        Assert.Equal(0, xdp.NrFrags);
        Assert.Equal(1000, xdp.GetBuffLength());

        NetMemRef a = pool.AllocPage(), b = pool.AllocPage();
        Assert.True(xdp.AddFrag(a, 0, 4096, 4096));
        Assert.True(xdp.AddFrag(b, 128, 904, 2048));
        Assert.True(xdp.HasFrags);
        Assert.Equal(XdpBuffFlags.HasFrags, xdp.Flags);
        Assert.Equal(2, xdp.NrFrags);
        Assert.Equal(4096 + 904, xdp.FragsSize);
        Assert.Equal(4096 + 2048, xdp.FragsTrueSize);
        Assert.Equal(1000, xdp.Length); // data_end - data: the head alone
        Assert.Equal(1000 + 4096 + 904, xdp.GetBuffLength());
        Assert.Equal(new SkbFrag(a, 0, 4096), xdp.Frags[0]);
        Assert.Equal(new SkbFrag(b, 128, 904), xdp.Frags[1]);
        // skb_shared_info sits at the end of the head's frame: frame_sz - SKB_DATA_ALIGN(sizeof(shinfo)).
        Assert.True(xdp.DataHardEnd == xdp.DataHardStart + 4096 - XdpBuff.SharedInfoSize);
        Assert.Equal(2, *(int*)xdp.DataHardEnd);

        // xdp_init_buff clears the flags: a reused buffer starts without fragments.
        Xdp.ReturnBuff(xdp);
        xdp.Init(4096, XdpMemInfo.ForPagePool(pool));
        Assert.False(xdp.HasFrags);
        Assert.True(xdp.Frags.IsEmpty);
        AssertAllBack(pool);
    }

    [Fact]
    public void Xdp_buff_add_frag_refuses_a_fragment_past_MAX_SKB_FRAGS_and_leaves_the_buffer_as_it_was()
    {
        using var pool = NewPool();
        XdpBuff xdp = Build(pool, headLen: 64, frags: XdpBuff.MaxFrags, fragLen: 100);
        Assert.Equal(17, XdpBuff.MaxFrags);
        NetMemRef extra = pool.AllocPage();
        Assert.False(xdp.AddFrag(extra, 0, 100, 4096));
        Assert.Equal(XdpBuff.MaxFrags, xdp.NrFrags);
        Assert.Equal(64 + 17 * 100, xdp.GetBuffLength());
        pool.PutPage(extra, allowDirect: true); // the caller kept its reference

        var before = pool.GetStats();
        Xdp.ReturnBuff(xdp);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 18));
        AssertAllBack(pool);
    }

    [Fact]
    public void Xdp_buff_add_frag_throws_when_the_head_runs_into_the_tailroom_the_list_needs()
    {
        using var pool = NewPool();
        XdpBuff xdp = Build(pool, headLen: 4096 - Headroom - XdpBuff.SharedInfoSize + 1, frags: 0);
        NetMemRef frag = pool.AllocPage();
        var ex = Assert.Throws<InvalidOperationException>(() => xdp.AddFrag(frag, 0, 100, 4096));
        Assert.Contains("fragment list", ex.Message);
        Assert.False(xdp.HasFrags);
        // One byte less fits.
        xdp.DataEnd--;
        Assert.True(xdp.AddFrag(frag, 0, 100, 4096));
        Xdp.ReturnBuff(xdp);
        AssertAllBack(pool);
    }

    [Fact]
    public void Xdp_return_buff_on_the_consumer_thread_recycles_the_head_and_every_fragment_into_the_alloc_cache()
    {
        // mvneta_xdp_put_buff: every fragment's page, then the head's, page_pool_put_full_page(..., true).
        using var pool = NewPool();
        XdpBuff xdp = Build(pool, headLen: 1500, frags: 3);
        var before = pool.GetStats();
        Xdp.ReturnBuff(xdp);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 4));
        AssertAllBack(pool);
    }

    [Fact]
    public void Xdp_convert_buff_to_frame_keeps_the_fragments_and_xdp_return_frame_from_another_thread_puts_them_all_through_the_ring()
    {
        using var pool = NewPool();
        XdpBuff xdp = Build(pool, headLen: 1500, frags: 2, fragLen: 3000);
        NetMemRef head = NetMemRef.FromAddress(xdp.Data);
        XdpFrame frame = xdp.ToFrame();
        Assert.False(frame.IsNull);
        Assert.True(frame.HasFrags);
        Assert.Equal(XdpBuffFlags.HasFrags, frame.Flags);
        Assert.Equal(2, frame.NrFrags);
        Assert.Equal(1500, frame.Length);
        Assert.Equal(1500 + 6000, frame.GetFrameLength()); // xdp_get_frame_len
        Assert.Equal(xdp.Frags[1], frame.Frags[1]);

        var before = pool.GetStats();
        OtherThread.Run(() => Xdp.ReturnFrame(frame));
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 3));
        Assert.False(frame.IsLive);
        // A second return throws and puts nothing.
        var mid = pool.GetStats();
        Assert.Throws<InvalidOperationException>(() => Xdp.ReturnFrame(frame));
        StatsAssert.Moved(mid, pool.GetStats());
        Assert.Equal(0, head.Value.PpRefCount);
        AssertAllBack(pool);
    }

    [Fact]
    public void Xdp_return_frame_rx_napi_on_the_consumer_thread_recycles_every_page_directly()
    {
        using var pool = NewPool();
        XdpFrame frame = Build(pool, headLen: 200, frags: 5).ToFrame();
        var before = pool.GetStats();
        Xdp.ReturnFrameRxNapi(frame);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 6));
        AssertAllBack(pool);
    }

    [Fact]
    public void A_frame_with_fragments_does_not_convert_when_its_head_runs_past_xdp_data_hard_end()
    {
        using var pool = NewPool();
        XdpBuff xdp = Build(pool, headLen: 100, frags: 1);
        xdp.DataEnd = xdp.DataHardEnd + 1; // a program grew the head into the list
        Assert.True(xdp.ToFrame().IsNull);
        xdp.DataEnd = xdp.DataHardEnd;
        XdpFrame frame = xdp.ToFrame();
        Assert.False(frame.IsNull);
        Xdp.ReturnFrameRxNapi(frame);
        AssertAllBack(pool);
    }

    [Fact]
    public void Xdp_return_frame_bulk_puts_every_fragment_of_every_frame_to_its_own_pool()
    {
        // xdp_return_frame_bulk: the fragments then the head of each frame join the bulk queue of their pool.
        using var p1 = NewPool();
        using var p2 = NewPool();
        var frames = new XdpFrame[6];
        for (int i = 0; i < frames.Length; i++)
            frames[i] = Build(i % 2 == 0 ? p1 : p2, headLen: 100, frags: i).ToFrame();
        // Frames 0, 2, 4 (p1): 1 + 3 + 5 pages; frames 1, 3, 5 (p2): 2 + 4 + 6 pages.
        var b1 = p1.GetStats();
        var b2 = p2.GetStats();
        OtherThread.Run(() => Xdp.ReturnFrameBulk(frames));
        StatsAssert.Moved(b1, p1.GetStats(), ("RecycleRing", 9));
        StatsAssert.Moved(b2, p2.GetStats(), ("RecycleRing", 12));
        Assert.All(frames, f => Assert.False(f.IsLive));
        AssertAllBack(p1);
        AssertAllBack(p2);
    }

    [Fact]
    public void Xdp_return_frame_bulk_of_more_pages_than_one_bulk_queue_flushes_and_puts_them_all()
    {
        using var pool = NewPool();
        var frames = new XdpFrame[3];
        for (int i = 0; i < frames.Length; i++)
            frames[i] = Build(pool, headLen: 100, frags: XdpBuff.MaxFrags, fragLen: 64).ToFrame();
        var before = pool.GetStats();
        OtherThread.Run(() => Xdp.ReturnFrameBulk(frames));
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleRing", 3 * 18));
        AssertAllBack(pool);
    }

    [Fact]
    public void A_fragment_that_fails_its_pools_checks_does_not_stop_the_rest_of_the_frame_from_going_back()
    {
        using var pool = NewPool();
        XdpBuff xdp = Build(pool, headLen: 100, frags: 3);
        NetMemRef bad = xdp.Frags[1].Page;
        pool.PutPage(bad, allowDirect: true); // its reference is gone: the frame's put of it is an over-release
        XdpFrame frame = xdp.ToFrame();
        var before = pool.GetStats();
        Assert.ThrowsAny<InvalidOperationException>(() => Xdp.ReturnFrameRxNapi(frame));
        // The head and the two good fragments still went back.
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 3));
        Assert.False(frame.IsLive);
        AssertAllBack(pool);
    }

    [Fact]
    public void Fragments_cut_from_the_heads_own_page_recycle_it_once_after_the_last_piece()
    {
        // A driver that splits a page (page_pool_fragment_netmem) may put the head and a fragment in one page.
        using var pool = NewPool();
        NetMemRef page = pool.AllocPage();
        pool.FragmentPage(page, 2);
        XdpBuff xdp = default;
        xdp.Init(2048, XdpMemInfo.ForPagePool(pool));
        xdp.Prepare(page.Address, Headroom, 1000, metaValid: false);
        Assert.True(xdp.AddFrag(page, 2048, 1500, 2048));
        Assert.True(xdp.DataHardEnd == page.Address + 2048 - XdpBuff.SharedInfoSize);
        XdpFrame frame = xdp.ToFrame();
        var before = pool.GetStats();
        Xdp.ReturnFrameRxNapi(frame);
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 1));
        Assert.Equal(0, page.Value.PpRefCount);
        AssertAllBack(pool);
    }

    [Fact]
    public void Xdp_build_skb_from_frame_moves_the_head_and_every_fragment_into_a_packet_marked_for_recycling()
    {
        using var pool = NewPool();
        XdpBuff xdp = Build(pool, headLen: 1400, frags: 3, fragLen: 2500);
        NetMemRef head = NetMemRef.FromAddress(xdp.Data);
        XdpFrame frame = xdp.ToFrame();
        var packet = new Packet();
        var before = pool.GetStats();
        packet.BuildFromXdp(frame);
        StatsAssert.Moved(before, pool.GetStats()); // no reference taken or dropped: they moved
        Assert.True(packet.IsLive);
        Assert.True(packet.PpRecycle);
        Assert.Equal(new SkbFrag(head, Headroom, 1400), packet.Head);
        Assert.Equal(3, packet.NrFrags);
        Assert.Equal(frame.GetFrameLength(), packet.Length);
        Assert.Equal(1400 + 3 * 2500, packet.Length);
        // The frame is spent: returning it too would put its pages twice.
        Assert.Throws<InvalidOperationException>(() => Xdp.ReturnFrame(frame));
        Assert.Throws<InvalidOperationException>(() => new Packet().BuildFromXdp(frame));

        packet.Free();
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 4));
        AssertAllBack(pool);
    }

    [Fact]
    public void Xdp_build_skb_from_buff_keeps_the_fragments_and_a_shared_copy_holds_the_pages_until_both_are_freed()
    {
        using var pool = NewPool();
        XdpBuff xdp = Build(pool, headLen: 700, frags: 2);
        var packet = new Packet();
        packet.BuildFromXdp(xdp);
        Assert.Equal(700 + 8000, packet.Length);
        Assert.Equal(xdp.Frags.ToArray(), packet.Frags.ToArray());
        var copy = new Packet();
        packet.ShareInto(copy);
        var before = pool.GetStats();
        packet.Free();
        StatsAssert.Moved(before, pool.GetStats());
        copy.Free();
        StatsAssert.Moved(before, pool.GetStats(), ("RecycleCached", 3));
        AssertAllBack(pool);
        // A live packet refuses to be built over.
        XdpBuff other = Build(pool, headLen: 64, frags: 1);
        var live = new Packet();
        live.BuildFromXdp(other);
        Assert.Throws<InvalidOperationException>(() => live.BuildFromXdp(other));
        live.Free();
        AssertAllBack(pool);
    }

    [Fact]
    public void Building_converting_and_returning_multi_buffer_frames_allocates_no_managed_memory()
    {
        using var pool = NewPool();
        var packet = new Packet();
        Span<XdpFrame> frames = stackalloc XdpFrame[8];
        Cycle(pool, packet, frames); // JIT and first-use allocations out of the way
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
            Cycle(pool, packet, frames);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        AssertAllBack(pool);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Cycle(PagePool pool, Packet packet, Span<XdpFrame> frames)
    {
        for (int i = 0; i < frames.Length; i++)
            frames[i] = NoAssertBuild(pool, 3).ToFrame();
        Xdp.ReturnFrameBulk(frames);
        Xdp.ReturnFrameRxNapi(NoAssertBuild(pool, 2).ToFrame());
        Xdp.ReturnBuff(NoAssertBuild(pool, 4));
        packet.BuildFromXdp(NoAssertBuild(pool, 1).ToFrame());
        packet.Free();
        XdpBuff b = NoAssertBuild(pool, 2);
        _ = b.GetBuffLength();
        packet.BuildFromXdp(b);
        packet.Free();
    }

    private static XdpBuff NoAssertBuild(PagePool pool, int frags)
    {
        NetMemRef head = pool.AllocPage();
        XdpBuff xdp = default;
        xdp.Init(head.Size, XdpMemInfo.ForPagePool(pool));
        xdp.Prepare(head.Address, Headroom, 1000, metaValid: false);
        for (int i = 0; i < frags; i++)
            xdp.AddFrag(pool.AllocPage(), 0, 3000, 4096);
        return xdp;
    }

    [Fact]
    public void The_fragment_list_layout_is_pinned()
    {
        Assert.Equal(16, sizeof(SkbFrag));
        Assert.Equal(288, sizeof(XdpSharedInfo));
        Assert.Equal(XdpBuff.SharedInfoSize, sizeof(XdpSharedInfo));
        XdpSharedInfo s = default;
        Assert.Equal(0, (int)((byte*)&s.NrFrags - (byte*)&s));
        Assert.Equal(4, (int)((byte*)&s.XdpFragsSize - (byte*)&s));
        Assert.Equal(8, (int)((byte*)&s.XdpFragsTruesize - (byte*)&s));
        Assert.Equal(16, (int)((byte*)&s.Frag0 - (byte*)&s));
    }
}
