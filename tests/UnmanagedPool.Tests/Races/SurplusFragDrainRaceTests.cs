using UnmanagedPool.Internal;
using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// A surplus fragment put (a piece put twice) that lands while the drain takes a page whose count says every piece
/// is back: the drain must see it (and refuse the page), not overwrite the count and hand the page out again.
/// </summary>
[Collection(RaceHookCollection.Name)]
public class SurplusFragDrainRaceTests
{
    [Fact]
    public unsafe void A_surplus_put_landing_between_the_drains_check_and_its_take_is_caught_and_the_page_stays_out()
    {
        var pool = new PagePool(new PagePoolOptions { PoolSize = 64 });
        int size = pool.UsableSize / 2;
        using var atPause = new ManualResetEventSlim();
        using var resume = new ManualResetEventSlim();
        NetMemRef a = default, b = default;
        Exception? atDrain = null;
        NetMemRef next = default;
        // A thread other than the consumer cuts the shared fragment page: its drain is the checked one.
        var cutter = new Thread(() =>
        {
            a = pool.AllocFrag(size, out _);
            b = pool.AllocFrag(size, out _);
            pool.PutPage(a);
            pool.PutPage(b);
            int cutterId = Environment.CurrentManagedThreadId;
            RaceHooks.Pause = point =>
            {
                // Only this thread's drain (other tests' threads pass through).
                if (point != RaceHooks.DrainFragAllBack || Environment.CurrentManagedThreadId != cutterId)
                    return;
                atPause.Set();
                resume.Wait();
            };
            try
            {
                // The page is full: this drains it, finds every piece back, and pauses before taking it.
                next = pool.AllocFrag(size, out _);
            }
            catch (Exception e)
            {
                atDrain = e;
            }
        });
        try
        {
            cutter.Start();
            Assert.True(atPause.Wait(TimeSpan.FromSeconds(30)), "the drain never reached the pause point");
            RaceHooks.Pause = null;
            // The surplus put: piece a a second time.
            OtherThread.Run(() => pool.PutPage(a));
            resume.Set();
            cutter.Join();
        }
        finally
        {
            RaceHooks.Pause = null;
            resume.Set();
        }
        Assert.True(atDrain is InvalidOperationException, $"the drain did not report the surplus put (got {atDrain?.GetType().Name ?? "nothing"}, next page {(next == a ? "the same page" : "another page")})");
        Assert.Contains($"0x{(nint)a.Address:x}", atDrain!.Message);
        // The page is kept out of the pool: no later allocation hands it out.
        var pages = new NetMemRef[2 * PagePool.AllocCacheSize];
        int got = OtherThread.Run(() => pool.AllocPages(pages));
        Assert.DoesNotContain(a, pages.AsSpan(0, got).ToArray());
    }
}
