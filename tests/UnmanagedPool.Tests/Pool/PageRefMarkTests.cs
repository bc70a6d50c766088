using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

/// <summary>
/// The page-reference mark (<see cref="NetMemRef.PpPageRefsTaken"/>): the fast put paths compare pp_magic exactly and
/// do not read the page's reference count, so a page on which <see cref="NetMemRef.GetPage"/> took a reference must
/// fail that compare on every one of them, and be released while the reference is held (the kernel's
/// <c>released_refcnt</c>), never recycled; once the reference is dropped, the next put recycles the page and
/// clears the mark, so the fast paths take it again.
/// </summary>
public unsafe class PageRefMarkTests
{
    public enum PutPath
    {
        ConsumerRecycleDirect,
        ConsumerPutToRing,
        ConsumerPutPages,
        PoolPutPageOtherThread,
        PoolPutPagesOtherThread,
    }

    public static TheoryData<PutPath> Paths => new(Enum.GetValues<PutPath>());

    /// <summary>
    /// Puts <paramref name="page"/> the path's way, after four ordinary pages the same way on the same thread, so that
    /// a put from another thread finds its per-CPU cache held and could take the fast path.
    /// </summary>
    private static void Put(PagePool pool, PagePoolConsumer consumer, PutPath path, NetMemRef page)
    {
        var warm = new NetMemRef[4];
        for (int i = 0; i < warm.Length; i++)
            warm[i] = consumer.AllocPage();
        switch (path)
        {
            case PutPath.ConsumerRecycleDirect:
                foreach (NetMemRef w in warm)
                    consumer.RecycleDirect(w);
                consumer.RecycleDirect(page);
                break;
            case PutPath.ConsumerPutToRing:
                foreach (NetMemRef w in warm)
                    consumer.PutPage(w, -1, allowDirect: false);
                consumer.PutPage(page, -1, allowDirect: false);
                break;
            case PutPath.ConsumerPutPages:
                pool.PutPages(warm);
                pool.PutPages(new[] { page });
                break;
            case PutPath.PoolPutPageOtherThread:
                OtherThread.Run(() =>
                {
                    foreach (NetMemRef w in warm)
                        pool.PutPage(w);
                    pool.PutPage(page);
                });
                break;
            case PutPath.PoolPutPagesOtherThread:
                OtherThread.Run(() =>
                {
                    pool.PutPages(warm);
                    pool.PutPages(new[] { page });
                });
                break;
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void A_page_with_a_page_reference_is_released_by_every_put_path_never_recycled(PutPath path)
    {
        var pool = new PagePool(new PagePoolOptions());
        PagePoolConsumer consumer = pool.BindConsumer();
        NetMemRef page = consumer.AllocPage();
        Assert.Equal(NetMemRef.PpSignature, page.Value.PpMagic);
        Assert.Equal(2, page.GetPage());
        Assert.Equal(NetMemRef.PpSignature | NetMemRef.PpPageRefsTaken, page.Value.PpMagic);
        Assert.True(page.IsPagePool);

        PagePoolStats before = pool.GetStats();
        Put(pool, consumer, path, page);
        PagePoolStats after = pool.GetStats();
        Assert.Equal(1, after.RecycleReleasedRefcnt - before.RecycleReleasedRefcnt);
        Assert.False(page.IsPagePool);
        Assert.Equal(PageState.InUse, page.State); // the other holder still has it
        for (int i = 0; i < 300; i++)
            Assert.NotEqual(page, consumer.AllocPage());
        Assert.True(page.PutPage()); // the other holder's put_page gives it to the provider
        Assert.Equal(PageState.Free, page.State);
        pool.Dispose();
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Once_the_page_reference_is_dropped_the_next_put_recycles_the_page_and_clears_the_mark(PutPath path)
    {
        var pool = new PagePool(new PagePoolOptions());
        PagePoolConsumer consumer = pool.BindConsumer();
        NetMemRef page = consumer.AllocPage();
        Assert.Equal(2, page.GetPage());
        Assert.False(page.PutPage()); // the reference taken above; the pool's is left
        Assert.Equal(1, page.Value.RefCount);
        Assert.Equal(NetMemRef.PpSignature | NetMemRef.PpPageRefsTaken, page.Value.PpMagic);

        PagePoolStats before = pool.GetStats();
        Put(pool, consumer, path, page);
        PagePoolStats after = pool.GetStats();
        Assert.Equal(0, after.RecycleReleasedRefcnt - before.RecycleReleasedRefcnt);
        Assert.Equal(0, after.Release - before.Release);
        Assert.True(page.IsPagePool);
        Assert.Equal(NetMemRef.PpSignature, page.Value.PpMagic);
        Assert.Equal(0, page.Value.PpRefCount);
        pool.Dispose();
    }

    [Fact]
    public void In_debug_mode_a_marked_page_is_released_while_referenced_and_recycled_unmarked_after()
    {
        var pool = new PagePool(new PagePoolOptions { DebugMode = true });
        PagePoolConsumer consumer = pool.BindConsumer();
        NetMemRef held = consumer.AllocPage();
        held.GetPage();
        PagePoolStats before = pool.GetStats();
        consumer.RecycleDirect(held);
        Assert.Equal(1, pool.GetStats().RecycleReleasedRefcnt - before.RecycleReleasedRefcnt);
        Assert.True(held.PutPage());

        NetMemRef page = consumer.AllocPage();
        page.GetPage();
        Assert.False(page.PutPage());
        consumer.RecycleDirect(page);
        Assert.True(page.IsPagePool);
        Assert.Equal(NetMemRef.PpSignature, page.Value.PpMagic);
        Assert.Equal(0, page.Value.PpRefCount);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void GetPage_on_a_page_that_is_not_a_pool_page_leaves_pp_magic_alone()
    {
        using var provider = new PageProvider();
        NetMemRef page = provider.Take();
        Assert.Equal(2, page.GetPage());
        Assert.Equal(0UL, page.Value.PpMagic);
        Assert.False(page.PutPage());
        Assert.True(page.PutPage());
    }
}

/// <summary>
/// The page-reference mark under concurrency: two other threads drop the page references they were given while the
/// consumer recycles the page. Whichever comes first, the page is recycled only with no page reference left (then
/// with the exact signature again) and released otherwise (freed by the last holder), never both, never lost.
/// </summary>
public unsafe class PageRefMarkRaceTests
{
    [Fact]
    public void Holders_dropping_page_references_while_the_consumer_recycles_never_leave_a_referenced_page_in_the_pool()
    {
        const int Rounds = 1000;
        var pool = new PagePool(new PagePoolOptions());
        PagePoolConsumer consumer = pool.BindConsumer();
        NetMemRef shared = default;
        using var start = new Barrier(3);
        using var done = new Barrier(3);
        Exception? failure = null;
        void Holder()
        {
            try
            {
                for (int r = 0; r < Rounds; r++)
                {
                    start.SignalAndWait();
                    shared.PutPage(); // the reference the consumer took for this thread
                    done.SignalAndWait();
                }
            }
            catch (Exception e)
            {
                // The consumer stops at its next round; these let it pass the barriers of this one.
                failure ??= e;
                start.RemoveParticipant();
                done.RemoveParticipant();
            }
        }
        var b = new Thread(Holder);
        var c = new Thread(Holder);
        b.Start();
        c.Start();
        long recycled = 0, released = 0;
        var wrong = new List<string>(); // checked after the holders are joined: a throw here would strand them
        for (int r = 0; r < Rounds && failure == null; r++)
        {
            NetMemRef page = consumer.AllocPage();
            page.GetPage();
            page.GetPage();
            shared = page;
            long releasedBefore = pool.GetStats().RecycleReleasedRefcnt;
            start.SignalAndWait();
            consumer.RecycleDirect(page); // races the two PutPage calls
            // Recycled while a holder still had the page would hand it out again under that holder: the count read
            // now, with the holders possibly still running, must already be the pool's alone.
            bool recycled_ = page.IsPagePool;
            int countNow = page.Value.RefCount;
            bool counted = pool.GetStats().RecycleReleasedRefcnt == releasedBefore + 1;
            done.SignalAndWait();
            if (recycled_)
            {
                // Recycled: both references were gone first; the page is the pool's, unmarked, with only its reference.
                recycled++;
                if (countNow != 1 || counted || page.Value.PpMagic != NetMemRef.PpSignature || page.Value.RefCount != 1 || page.Value.PpRefCount != 0)
                    wrong.Add($"round {r}: recycled with count {countNow} then {page.Value.RefCount}, magic {page.Value.PpMagic:x}, released_refcnt counted {counted}");
            }
            else
            {
                // Released while a holder still had it (counted once as released_refcnt): the last holder's PutPage
                // gave it to the provider.
                released++;
                if (!counted || page.State != PageState.Free)
                    wrong.Add($"round {r}: released, released_refcnt counted {counted}, state {page.State}");
            }
        }
        b.Join();
        c.Join();
        Assert.Null(failure);
        Assert.Empty(wrong);
        Assert.Equal(Rounds, recycled + released);
        // Every page the pool still holds is in its caches: no user, no holder has one.
        PagePoolStats st = pool.GetStats();
        Assert.Equal(st.Pooled, st.Hold - st.Release);
        Assert.Equal(released, st.RecycleReleasedRefcnt);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }
}
