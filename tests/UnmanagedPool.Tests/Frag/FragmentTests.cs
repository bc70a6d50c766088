using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Frag;

public unsafe class FragmentTests
{
    private const long Bias = PagePool.BiasMax;

    private static PagePool NewPool(int offset = 0) => new(new PagePoolOptions { PoolSize = 256, Offset = offset, DebugMode = false });

    private static long Count(NetMemRef page) => page.Value.PpRefCount;

    [Fact]
    public void Bias_max_is_half_of_long_max_value()
    {
        Assert.Equal(long.MaxValue >> 1, PagePool.BiasMax);
    }

    [Fact]
    public void The_bias_arithmetic_drains_a_page_with_pieces_still_out_and_the_last_put_recycles_it()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();

        var a = c.AllocFrag(1000, out int offA);
        Assert.Equal(0, offA);
        Assert.Equal(Bias, Count(a));
        Assert.Equal((a, 1024, 1L), pool.ConsumerFragState);
        var s0 = pool.GetStats();
        Assert.Equal(1, s0.AllocSlow);
        Assert.Equal(0, s0.AllocFast);

        var b = c.AllocFrag(1024, out int offB);
        var cc = c.AllocFrag(2048, out int offC);
        Assert.Equal(a, b);
        Assert.Equal(a, cc);
        Assert.Equal(1024, offB);
        Assert.Equal(2048, offC);
        Assert.Equal(Bias, Count(a));
        Assert.Equal((a, 4096, 3L), pool.ConsumerFragState);
        Assert.Equal(s0, pool.GetStats());

        pool.PutPage(a);
        Assert.Equal(Bias - 1, Count(a));
        Assert.Equal(s0, pool.GetStats());

        // The page cannot fit the next piece: drain subtracts Bias - 3, leaving the two pieces still out.
        var d = c.AllocFrag(64, out int offD);
        Assert.NotEqual(a, d);
        Assert.Equal(0, offD);
        Assert.Equal(2, Count(a));
        Assert.Equal(Bias, Count(d));
        Assert.Equal((d, 64, 1L), pool.ConsumerFragState);
        var s1 = pool.GetStats();
        Assert.Equal(s0.AllocFast + 1, s1.AllocFast);
        Assert.Equal(s0.RecycleCached, s1.RecycleCached);

        c.PutPage(b);
        Assert.Equal(1, Count(a));
        Assert.Equal(s1, pool.GetStats());
        long pooledBefore = s1.Pooled;
        c.PutPage(cc);
        Assert.Equal(0, Count(a));
        var s2 = pool.GetStats();
        Assert.Equal(s1.RecycleCached + 1, s2.RecycleCached);
        Assert.Equal(pooledBefore + 1, s2.Pooled);

        // A put of a page whose count is 0 is a double put: it throws and the pool is unchanged.
        Assert.Throws<InvalidOperationException>(() => c.PutPage(a));
        Assert.Throws<InvalidOperationException>(() => pool.PutPage(a));
        Assert.Equal(s2, pool.GetStats());
        Assert.Equal(0, Count(a));
    }

    [Fact]
    public void The_bias_arithmetic_drains_a_page_with_no_piece_out_and_reuses_it_at_once()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var p = c.AllocFrag(64, out _);
        var q = c.AllocFrag(4032, out int offQ);
        Assert.Equal(64, offQ);
        Assert.Equal((p, 4096, 2L), pool.ConsumerFragState);
        pool.PutPage(p);
        pool.PutPage(q);
        Assert.Equal(Bias - 2, Count(p));
        var s0 = pool.GetStats();

        var r = c.AllocFrag(128, out int offR);
        Assert.Equal(p, r);
        Assert.Equal(0, offR);
        Assert.Equal(Bias, Count(r));
        Assert.Equal((p, 128, 1L), pool.ConsumerFragState);
        var s1 = pool.GetStats();
        Assert.Equal(s0.RecycleCached + 1, s1.RecycleCached);
        Assert.Equal(s0.AllocFast + 1, s1.AllocFast);
        Assert.Equal(s0.Hold, s1.Hold);
        Assert.Equal(s0.Pooled, s1.Pooled);
        c.PutPage(r);
    }

    [Fact]
    public void A_direct_put_on_the_consumer_handle_takes_the_piece_back_from_the_users_count_without_touching_pp_ref_count()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var a = c.AllocFrag(1024, out _);
        var b = c.AllocFrag(1024, out _);
        var d = c.AllocFrag(1024, out _);
        c.PutPage(a);
        Assert.Equal(Bias, Count(a));
        Assert.Equal((a, 3072, 2L), pool.ConsumerFragState);
        pool.PutPage(b);
        Assert.Equal(Bias - 1, Count(a));
        // Drain: Bias - 2 subtracted (two users left), the one piece still out (d) remains.
        var e = c.AllocFrag(2048, out _);
        Assert.NotEqual(a, e);
        Assert.Equal(1, Count(a));
        Assert.Equal((e, 2048, 1L), pool.ConsumerFragState);
        long cached = pool.GetStats().RecycleCached;
        c.PutPage(d);
        Assert.Equal(0, Count(a));
        Assert.Equal(cached + 1, pool.GetStats().RecycleCached);
        c.PutPage(e);
        Assert.Equal((e, 2048, 0L), pool.ConsumerFragState);
        Assert.Equal(Bias, Count(e));
    }

    [Fact]
    public void Dispose_drains_the_fragment_page_and_the_last_piece_brings_inflight_to_zero()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        var a = c.AllocFrag(512, out _);
        c.AllocFrag(512, out _);
        c.PutPage(a);
        pool.Dispose();
        Assert.False(pool.IsFreed);
        Assert.Equal(1, pool.InFlight);
        Assert.Equal(1, Count(a));
        pool.PutPage(a);
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void Dispose_with_every_piece_back_frees_the_pool_at_once()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        var a = c.AllocFrag(512, out _);
        c.PutPage(a);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void Putting_a_fragment_more_times_than_handed_out_throws_and_leaves_the_count_alone()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        var a = c.AllocFrag(1024, out _);
        c.AllocFrag(1024, out _);
        pool.PutPage(a);
        c.PutPage(a);
        var s = pool.GetStats();
        var ex = Assert.Throws<InvalidOperationException>(() => c.PutPage(a));
        Assert.Contains("more times", ex.Message);
        Assert.Throws<InvalidOperationException>(() => pool.PutPage(a));
        Assert.Equal(Bias - 1, Count(a));
        Assert.Equal((a, 2048, 1L), pool.ConsumerFragState);
        Assert.Equal(s, pool.GetStats());
        // The pool still works: the page drains (no piece out) and is reused.
        var b = c.AllocFrag(4096, out int off);
        Assert.Equal(a, b);
        Assert.Equal(0, off);
        c.PutPage(b);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    [InlineData(4097)]
    public void A_fragment_size_outside_one_to_the_usable_page_throws_argument_out_of_range(int size)
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        Assert.Throws<ArgumentOutOfRangeException>(() => c.AllocFrag(size, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.AllocFrag(size, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Alloc(size, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Alloc(size, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => { pool.AllocVa(size); });
        Assert.Equal(0, pool.GetStats().Hold);
    }

    [Fact]
    public void A_fragment_larger_than_the_page_less_offset_throws_and_offsets_start_at_the_pool_offset()
    {
        using var pool = NewPool(offset: 256);
        var c = pool.BindConsumer();
        Assert.Equal(3840, pool.UsableSize);
        Assert.Throws<ArgumentOutOfRangeException>(() => c.AllocFrag(3841, out _));
        var a = c.AllocFrag(3840, out int off);
        Assert.Equal(256, off);
        var b = c.AllocFrag(100, out int offB);
        Assert.NotEqual(a, b);
        Assert.Equal(256, offB);
        c.PutPage(a);
        c.PutPage(b);
    }

    [Fact]
    public void Alloc_takes_a_fragment_up_to_half_the_usable_page_and_a_whole_page_above()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var frag = c.Alloc(2048, out int off1, out int true1);
        Assert.Equal(Bias, Count(frag));
        Assert.Equal(0, off1);
        Assert.Equal(2048, true1);
        var page = c.Alloc(2049, out int off2, out int true2);
        Assert.NotEqual(frag, page);
        Assert.Equal(1, Count(page));
        Assert.Equal(0, off2);
        Assert.Equal(4096, true2);
        Assert.Equal((frag, 2048, 1L), pool.ConsumerFragState);
        c.PutPage(frag);
        c.PutPage(page);
    }

    [Fact]
    public void Alloc_with_an_offset_compares_against_the_usable_page()
    {
        using var pool = NewPool(offset: 256);
        var c = pool.BindConsumer();
        var frag = c.Alloc(1920, out int off1, out _);
        Assert.Equal(Bias, Count(frag));
        Assert.Equal(256, off1);
        var page = c.Alloc(1921, out int off2, out int true2);
        Assert.Equal(1, Count(page));
        Assert.Equal(256, off2);
        Assert.Equal(3840, true2);
        c.PutPage(frag);
        c.PutPage(page);
    }

    [Fact]
    public void Alloc_folds_a_nearly_full_tail_into_the_current_fragment()
    {
        using var pool = NewPool();
        var c = pool.BindConsumer();
        var a = c.Alloc(1500, out int offA, out int trueA);
        Assert.Equal((0, 1536), (offA, trueA));
        var b = c.Alloc(1500, out int offB, out int trueB);
        Assert.Equal(a, b);
        Assert.Equal((1536, 4096 - 1536), (offB, trueB));
        Assert.Equal((a, 4096, 2L), pool.ConsumerFragState);
        var d = c.Alloc(1500, out int offD, out _);
        Assert.NotEqual(a, d);
        Assert.Equal(0, offD);
        c.PutPage(a);
        c.PutPage(b);
        c.PutPage(d);
    }

    [Fact]
    public void AllocVa_returns_an_address_inside_a_pool_page_and_FreeVa_puts_it()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        byte* x = c.AllocVa(100);
        byte* y = pool.AllocVa(100);
        Assert.True(x != null && y != null);
        Assert.Equal(64 * 2, y - x);
        var page = NetMemRef.FromAddress(x);
        Assert.True(page.IsPagePool);
        Assert.Equal(page, NetMemRef.FromAddress(y));
        x[0] = 1; y[99] = 2;
        c.FreeVa(x);
        pool.FreeVa(y);
        Assert.Equal(Bias - 1, Count(page));
        Assert.Equal(1, pool.ConsumerFragState.Users);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void Another_thread_cuts_its_own_shared_fragment_page_under_a_lock()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        var mine = c.AllocFrag(256, out _);
        NetMemRef[] theirs = new NetMemRef[40];
        int[] offsets = new int[40];
        var t = new Thread(() =>
        {
            for (int i = 0; i < theirs.Length; i++)
                theirs[i] = pool.AllocFrag(256, out offsets[i]);
        });
        t.Start();
        t.Join();
        Assert.DoesNotContain(mine, theirs);
        Assert.Equal(0, offsets[0]);
        Assert.Equal(256, offsets[1]);
        Assert.Equal(theirs[0], theirs[15]);
        Assert.NotEqual(theirs[15], theirs[16]);
        foreach (var p in theirs)
            pool.PutPage(p);
        c.PutPage(mine);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void Pieces_put_on_other_threads_while_the_consumer_cuts_come_back_exactly_once()
    {
        var pool = NewPool();
        var c = pool.BindConsumer();
        var queue = new System.Collections.Concurrent.BlockingCollection<nint>(boundedCapacity: 1024);
        var putters = new Thread[2];
        for (int k = 0; k < putters.Length; k++)
        {
            putters[k] = new Thread(() =>
            {
                foreach (nint p in queue.GetConsumingEnumerable())
                {
                    byte* b = (byte*)p;
                    Assert.Equal((byte)((nint)b >> 6), b[0]);
                    pool.FreeVa(b);
                }
            });
            putters[k].Start();
        }
        var rng = new Random(7);
        for (int i = 0; i < 50_000; i++)
        {
            byte* b = c.AllocVa(64 * rng.Next(1, 20));
            b[0] = (byte)((nint)b >> 6);
            queue.Add((nint)b);
        }
        queue.CompleteAdding();
        foreach (var t in putters)
            t.Join();
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }
}
