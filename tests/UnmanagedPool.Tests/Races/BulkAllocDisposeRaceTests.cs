using UnmanagedPool.Internal;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// A bulk allocation that <see cref="PagePool.Dispose"/> overtakes part-way: it returns the count it filled (the
/// caller can give those pages back), or throws having filled nothing. Never an exception with pages handed out.
/// </summary>
[Collection(RaceHookCollection.Name)]
public class BulkAllocDisposeRaceTests
{
    [Fact]
    public void AllocPages_from_another_thread_that_Dispose_overtakes_returns_the_pages_it_filled()
    {
        var pool = new PagePool(new PagePoolOptions { PoolSize = 256 });
        using var atPause = new ManualResetEventSlim();
        using var resume = new ManualResetEventSlim();
        int taken = 0;
        var pages = new NetMemRef[16];
        int got = -1;
        Exception? error = null;
        var allocator = new Thread(() =>
        {
            try
            {
                got = pool.AllocPages(pages);
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        int allocatorId = allocator.ManagedThreadId;
        RaceHooks.Pause = point =>
        {
            // Pause the allocator after its third page, once (other tests' threads pass through).
            if (point == RaceHooks.SharedBulkAllocNext && Environment.CurrentManagedThreadId == allocatorId
                && Interlocked.Increment(ref taken) == 3)
            {
                atPause.Set();
                resume.Wait();
            }
        };
        try
        {
            allocator.Start();
            Assert.True(atPause.Wait(TimeSpan.FromSeconds(30)), "the allocator never reached the pause point");
            pool.Dispose();
            resume.Set();
            allocator.Join();
        }
        finally
        {
            RaceHooks.Pause = null;
            resume.Set();
        }
        Assert.Null(error);
        Assert.Equal(3, got);
        for (int i = 0; i < got; i++)
            pool.PutPage(pages[i]);
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
    }

    [Fact]
    public void AllocPages_on_the_consumer_that_a_callback_disposes_part_way_returns_the_pages_it_filled()
    {
        PagePool pool = PoolDisposedInSecondBulk();
        PagePoolConsumer consumer = pool.BindConsumer();
        var pages = new NetMemRef[3 * PagePool.AllocCacheRefill];
        int got = consumer.AllocPages(pages);
        Assert.Equal(PagePool.AllocCacheRefill, got);
        for (int i = 0; i < got; i++)
            consumer.RecycleDirect(pages[i]);
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
    }

    [Fact]
    public void AllocPages_on_the_consumer_thread_through_the_pool_that_a_callback_disposes_part_way_returns_the_pages_it_filled()
    {
        PagePool pool = PoolDisposedInSecondBulk();
        var pages = new NetMemRef[3 * PagePool.AllocCacheRefill];
        int got = pool.AllocPages(pages);
        Assert.Equal(PagePool.AllocCacheRefill, got);
        for (int i = 0; i < got; i++)
            pool.PutPage(pages[i]);
        Assert.True(pool.IsFreed, $"in flight {pool.InFlight}");
    }

    /// <summary>A pool whose second bulk from the provider disposes it while the bulk is being set up (its init callback).</summary>
    private static PagePool PoolDisposedInSecondBulk()
    {
        PagePool? pool = null;
        int setUp = 0;
        pool = new PagePool(new PagePoolOptions
        {
            PoolSize = 256,
            InitCallback = (_, _) =>
            {
                if (++setUp == PagePool.AllocCacheRefill + 5)
                    pool!.Dispose();
            },
        });
        return pool;
    }
}

/// <summary>Tests that set <see cref="RaceHooks.Pause"/> run one at a time: the pause routine is process-wide.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RaceHookCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "race hooks";
}
