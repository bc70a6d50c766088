using UnmanagedPool.Internal;
using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// Two threads putting the same single-reference page at the same moment: the put skips the atomic operation (as
/// the kernel's does), so both may read a count of 1 and both recycle the page. The interleaving is replayed
/// exactly: the first put runs, the count is set back to the 1 the second putter read, and the second put runs.
/// The page is then in the pool twice; it must never be handed out twice, and the report names it.
/// </summary>
public class DoublePutRaceTests
{
    public enum PutWay
    {
        ConsumerDirect,
        ConsumerRing,
        ConsumerHandleDirect,
        OtherThread,
        OtherThreadBulk,
    }

    [Theory]
    [InlineData(PutWay.ConsumerDirect, false)]
    [InlineData(PutWay.ConsumerRing, false)]
    [InlineData(PutWay.ConsumerHandleDirect, false)]
    [InlineData(PutWay.OtherThread, false)]
    [InlineData(PutWay.OtherThreadBulk, false)]
    [InlineData(PutWay.ConsumerDirect, true)]
    [InlineData(PutWay.ConsumerRing, true)]
    [InlineData(PutWay.OtherThread, true)]
    public unsafe void A_page_that_two_racing_puts_left_in_the_pool_twice_is_never_handed_out_twice(PutWay way, bool debug)
    {
        var pool = new PagePool(new PagePoolOptions { PoolSize = 256, DebugMode = debug });
        bool onConsumer = way is PutWay.ConsumerDirect or PutWay.ConsumerRing or PutWay.ConsumerHandleDirect;
        PagePoolConsumer consumer = onConsumer ? pool.BindConsumer() : default;
        var held = new List<NetMemRef>();
        var reports = new List<string>();
        NetMemRef page = default;

        void Run()
        {
            page = pool.AllocPage();
            // Take the rest of the bulk the first allocation brought in, so the two puts land in a cache far from its
            // flush point: a flush could move one entry where this thread's allocations do not reach.
            var spare = new NetMemRef[PagePool.AllocCacheRefill - 1];
            int n = way == PutWay.ConsumerHandleDirect ? consumer.AllocPages(spare) : pool.AllocPages(spare);
            held.AddRange(spare.AsSpan(0, n).ToArray());
            Put(page);
            // The second putter read the count before the first put wrote 0.
            page.Value.PpRefCount = 1;
            Put(page);
            for (int i = 0; i < 3 * PagePool.AllocCacheSize; i++)
            {
                try
                {
                    held.Add(way == PutWay.ConsumerHandleDirect ? consumer.AllocPage() : pool.AllocPage());
                }
                catch (InvalidOperationException e)
                {
                    reports.Add(e.Message);
                }
            }
        }

        void Put(NetMemRef p)
        {
            switch (way)
            {
                case PutWay.ConsumerDirect:
                case PutWay.OtherThread:
                    pool.PutPage(p, -1, allowDirect: true);
                    break;
                case PutWay.ConsumerRing:
                    pool.PutPage(p, -1, allowDirect: false);
                    break;
                case PutWay.ConsumerHandleDirect:
                    consumer.RecycleDirect(p);
                    break;
                case PutWay.OtherThreadBulk:
                    pool.PutPages(new[] { p });
                    break;
            }
        }

        if (onConsumer)
            Run();
        else
            OtherThread.Run(Run);

        Assert.Equal(held.Count, held.Distinct().Count());
        string address = $"0x{(nint)page.Address:x}";
        Assert.Contains(held, p => p == page);
        Assert.True(reports.Count == 1 && reports[0].Contains(address),
            $"expected one report naming {address}, got: {string.Join(" | ", reports)}");
        if (onConsumer)
        {
            foreach (NetMemRef p in held)
                pool.PutPage(p);
        }
        else
        {
            OtherThread.Run(() =>
            {
                foreach (NetMemRef p in held)
                    pool.PutPage(p);
            });
        }
        pool.Dispose();
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_page_that_two_racing_puts_left_in_the_pool_twice_is_released_once_by_Dispose(bool debug)
    {
        var pool = new PagePool(new PagePoolOptions { PoolSize = 256, DebugMode = debug });
        NetMemRef page = pool.AllocPage();
        pool.PutPage(page, -1, allowDirect: false);
        page.Value.PpRefCount = 1;
        pool.PutPage(page, -1, allowDirect: false);
        pool.Dispose();
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
        PagePoolStats stats = pool.GetStats();
        Assert.Equal(stats.Hold, stats.Release);
    }
}

/// <summary>
/// Debug mode: of two puts of one single-reference page at the same moment, the second fails at the put. The first
/// putter is stopped after it read a count of 1; the second put runs whole; then the first goes on.
/// </summary>
[Collection(RaceHookCollection.Name)]
public class DebugDoublePutRaceTests
{
    [Fact]
    public unsafe void In_debug_mode_the_slower_of_two_racing_puts_of_one_page_throws_and_the_page_is_pooled_once()
    {
        var pool = new PagePool(new PagePoolOptions { PoolSize = 256, DebugMode = true });
        NetMemRef page = OtherThread.Run(() => pool.AllocPage());
        using var atPause = new ManualResetEventSlim();
        using var resume = new ManualResetEventSlim();
        int armed = 1;
        Exception? slower = null;
        var first = new Thread(() =>
        {
            try
            {
                pool.PutPage(page);
            }
            catch (Exception e)
            {
                slower = e;
            }
        });
        int firstId = first.ManagedThreadId;
        RaceHooks.Pause = point =>
        {
            // Only the first putter, once (other tests' threads pass through).
            if (point != RaceHooks.DebugSingleRefPut || Environment.CurrentManagedThreadId != firstId
                || Interlocked.Exchange(ref armed, 0) == 0)
                return;
            atPause.Set();
            resume.Wait();
        };
        try
        {
            first.Start();
            Assert.True(atPause.Wait(TimeSpan.FromSeconds(30)), "the first put never reached the pause point");
            OtherThread.Run(() => pool.PutPage(page));
            resume.Set();
            first.Join();
        }
        finally
        {
            RaceHooks.Pause = null;
            resume.Set();
        }
        Assert.True(slower is InvalidOperationException, $"the slower put did not throw (got {slower?.GetType().Name ?? "nothing"})");
        Assert.Contains($"0x{(nint)page.Address:x}", slower!.Message);
        var held = new List<NetMemRef>();
        OtherThread.Run(() =>
        {
            for (int i = 0; i < 3 * PagePool.AllocCacheSize; i++)
                held.Add(pool.AllocPage());
        });
        Assert.Equal(held.Count, held.Distinct().Count());
        OtherThread.Run(() =>
        {
            foreach (NetMemRef p in held)
                pool.PutPage(p);
        });
        pool.Dispose();
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
    }
}
