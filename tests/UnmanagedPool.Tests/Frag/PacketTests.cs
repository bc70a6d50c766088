using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Frag;

public unsafe class PacketTests
{
    private static PagePool NewPool() => new(new PagePoolOptions { PoolSize = 1024, DebugMode = false });

    [Fact]
    public void Free_returns_the_head_and_every_fragment_to_the_pool_and_the_packet_can_be_built_again()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        var pkt = new Packet();
        for (int round = 0; round < 3; round++)
        {
            pkt.MarkForRecycle();
            var head = c.AllocPage();
            pkt.SetHead(head, 256, 128);
            for (int i = 0; i < 3; i++)
            {
                var f = c.AllocFrag(1000, out int off);
                pkt.AddFrag(f, off, 1000);
            }
            Assert.True(pkt.IsLive);
            Assert.Equal(3, pkt.NrFrags);
            Assert.Equal(128 + 3000, pkt.Length);
            Assert.Equal(1, head.Value.PpRefCount);
            pkt.Free();
            Assert.False(pkt.IsLive);
            Assert.Equal(0, pkt.NrFrags);
            Assert.Equal(0, head.Value.PpRefCount);
        }
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void Freeing_a_packet_twice_throws_and_leaves_the_pool_unharmed()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var pkt = new Packet { PpRecycle = true };
        var page = c.AllocPage();
        pkt.AddFrag(page, 0, 60);
        pkt.Free();
        var s = pool.GetStats();
        var ex = Assert.Throws<InvalidOperationException>(pkt.Free);
        Assert.Contains("double free", ex.Message);
        Assert.Equal(s, pool.GetStats());
        Assert.Equal(0, page.Value.PpRefCount);
        Assert.Throws<InvalidOperationException>(new Packet().Free);
    }

    [Fact]
    public void A_packet_holds_at_most_seventeen_fragments()
    {
        using var provider = new PageProvider(PageConstants.MinRegionShift);
        var pkt = new Packet();
        var page = provider.Take();
        for (int i = 0; i < Packet.MaxFrags; i++)
        {
            if (i > 0)
                page.GetPage();
            pkt.AddFrag(page, i * 64, 64);
        }
        Assert.Throws<InvalidOperationException>(() => pkt.AddFrag(page, 0, 1));
        Assert.Equal(17, page.Value.RefCount);
        pkt.Free();
        Assert.Equal(0, provider.PagesInUse);
    }

    [Fact]
    public void Pages_not_from_a_pool_are_freed_with_put_page_even_under_pp_recycle()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        using var provider = new PageProvider(PageConstants.MinRegionShift);
        var foreign = provider.Take();
        Assert.False(foreign.IsPagePool);
        var pkt = new Packet { PpRecycle = true };
        pkt.SetHead(foreign, 0, 100);
        var f = c.AllocFrag(512, out int off);
        pkt.AddFrag(f, off, 512);
        Assert.Equal(1, provider.PagesInUse);
        pkt.Free();
        Assert.Equal(0, provider.PagesInUse);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void A_shared_page_stays_out_of_the_pool_until_both_packets_are_freed()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var page = c.AllocPage();
        var a = new Packet { PpRecycle = true };
        a.SetHead(page, 0, 1500);
        var b = new Packet();
        a.ShareInto(b);
        Assert.True(b.PpRecycle);
        Assert.Equal(a.Head, b.Head);
        Assert.Equal(2, page.Value.PpRefCount);
        long pooled = pool.GetStats().Pooled;
        a.Free();
        Assert.Equal(1, page.Value.PpRefCount);
        Assert.Equal(pooled, pool.GetStats().Pooled);
        b.Free();
        Assert.Equal(0, page.Value.PpRefCount);
        Assert.Equal(pooled + 1, pool.GetStats().Pooled);
    }

    [Fact]
    public void Packets_sharing_pages_freed_on_two_threads_in_random_order_bring_inflight_to_zero()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        using var provider = new PageProvider(PageConstants.MinRegionShift);
        const int n = 3000;
        var originals = new Packet[n];
        var clones = new Packet[n];
        var rng = new Random(1234);
        for (int i = 0; i < n; i++)
        {
            var p = new Packet { PpRecycle = true };
            if (i % 10 == 0)
            {
                p.SetHead(provider.Take(), 0, 64);
            }
            else
            {
                var head = c.AllocFrag(256, out int hoff);
                p.SetHead(head, hoff, 200);
            }
            int frags = rng.Next(0, 4);
            for (int k = 0; k < frags; k++)
            {
                var f = c.Alloc(rng.Next(64, 3000), out int off, out int len);
                p.AddFrag(f, off, len);
            }
            originals[i] = p;
            clones[i] = new Packet();
            p.ShareInto(clones[i]);
        }
        rng.Shuffle(originals);
        rng.Shuffle(clones);
        using var start = new Barrier(2);
        var ta = new Thread(() => { start.SignalAndWait(); foreach (var p in originals) p.Free(); });
        var tb = new Thread(() => { start.SignalAndWait(); foreach (var p in clones) p.Free(); });
        ta.Start(); tb.Start();
        ta.Join(); tb.Join();
        Assert.All(originals, p => Assert.False(p.IsLive));
        Assert.All(clones, p => Assert.False(p.IsLive));
        Assert.Equal(0, provider.PagesInUse);
        var s = pool.GetStats();
        Assert.Equal(s.InFlight, s.Pooled); // every page is back in the pool, the fragment page being cut included
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void Fragments_read_as_spans_over_their_bytes()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var page = c.AllocFrag(100, out int off);
        var frag = new SkbFrag(page, off, 100);
        frag.AsSpan().Fill(0x5a);
        Assert.Equal(100, page.AsSpan(off, 100).IndexOfAnyExcept((byte)0x5a) < 0 ? 100 : -1);
        Assert.True(frag.Address == page.Address + off);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SkbFrag(page, 4000, 100));
        Assert.Throws<ArgumentOutOfRangeException>(() => page.AsSpan(4000, 100));
        c.PutPage(page);
    }
}
