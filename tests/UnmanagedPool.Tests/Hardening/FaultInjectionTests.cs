using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Hardening;

public class FaultInjectionTests
{
    [Fact]
    public void When_the_provider_fails_the_consumer_gets_null_counted_and_a_later_allocation_works()
    {
        var injector = ScheduleFaultInjector.Always();
        using var provider = new PageProvider { FaultInjector = injector };
        using var pool = new PagePool(new PagePoolOptions { Provider = provider });
        var consumer = pool.BindConsumer();

        Assert.True(consumer.AllocPage().IsNull);
        Assert.True(pool.AllocPage().IsNull);
        Assert.Equal(0, consumer.AllocPages(new NetMemRef[4]));
        PagePoolStats s = pool.GetStats();
        Assert.Equal(3, s.AllocFailed);
        Assert.Equal(0, s.InFlight);
        Assert.Equal(0, s.Hold);

        injector.Enabled = false;
        DebugModeTests.AssertConsistentAndUsable(pool, consumer);
        Assert.Equal(3, pool.GetStats().AllocFailed);
    }

    [Fact]
    public void When_the_provider_fails_another_thread_gets_null_counted_too()
    {
        var injector = ScheduleFaultInjector.Always();
        using var provider = new PageProvider { FaultInjector = injector };
        using var pool = new PagePool(new PagePoolOptions { Provider = provider });
        NetMemRef fromThread = default;
        var t = new Thread(() => fromThread = pool.AllocPage());
        t.Start();
        t.Join();
        Assert.True(fromThread.IsNull);
        Assert.Equal(1, pool.GetStats().AllocFailed);
        injector.Enabled = false;
        t = new Thread(() => { fromThread = pool.AllocPage(); pool.PutPage(fromThread); });
        t.Start();
        t.Join();
        Assert.False(fromThread.IsNull);
        PagePoolStats s = pool.GetStats();
        Assert.Equal(s.Pooled, s.InFlight);
    }

    [Fact]
    public void A_failure_in_the_middle_of_a_bulk_still_hands_out_the_pages_taken_before_it()
    {
        // Call 1 starts the bulk; calls 2.. follow each page taken; call 11 fails after ten pages.
        using var provider = new PageProvider { FaultInjector = ScheduleFaultInjector.Nth(11) };
        using var pool = new PagePool(new PagePoolOptions { Provider = provider });
        var consumer = pool.BindConsumer();
        NetMemRef page = consumer.AllocPage();
        Assert.False(page.IsNull);
        PagePoolStats s = pool.GetStats();
        Assert.Equal(10, s.Hold);
        Assert.Equal(9, s.Pooled);
        Assert.Equal(0, s.AllocFailed);
        consumer.RecycleDirect(page);
    }

    [Fact]
    public void A_storm_of_random_failures_never_corrupts_the_pool()
    {
        var injector = new RateFaultInjector(0.3, seed: 42);
        using var provider = new PageProvider { FaultInjector = injector };
        using var pool = new PagePool(new PagePoolOptions { Provider = provider, DebugLevel = PagePoolDebugLevel.Simple });
        var consumer = pool.BindConsumer();
        var held = new List<NetMemRef>();
        var rng = new Random(7);
        long nulls = 0;
        for (int step = 0; step < 20_000; step++)
        {
            if (held.Count < 2000 && rng.Next(3) != 0)
            {
                NetMemRef p = consumer.AllocPage();
                if (p.IsNull)
                {
                    nulls++;
                    continue;
                }
                Assert.Equal(1, p.Value.PpRefCount);
                held.Add(p);
            }
            else if (held.Count > 0)
            {
                int i = rng.Next(held.Count);
                consumer.RecycleDirect(held[i]);
                held[i] = held[^1];
                held.RemoveAt(held.Count - 1);
            }
            if (step % 4096 == 0)
                pool.Trim();
        }
        Assert.True(nulls > 0);
        Assert.Equal(held.Count, held.Distinct().Count());
        PagePoolStats s = pool.GetStats();
        Assert.True(s.AllocFailed >= nulls);
        Assert.Equal(held.Count + s.Pooled, s.InFlight);
        foreach (var p in held)
            consumer.RecycleDirect(p);
        Assert.Equal(0, pool.CorruptionsDetected);
    }

    [Fact]
    public void The_rate_injector_replays_the_same_failures_for_the_same_seed()
    {
        bool[] Draw(ulong seed)
        {
            var r = new RateFaultInjector(0.25, seed);
            return Enumerable.Range(0, 1000).Select(_ => r.ShouldFail(0)).ToArray();
        }
        bool[] a = Draw(5), b = Draw(5), c = Draw(6);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.InRange(a.Count(x => x), 180, 320);
        var never = new RateFaultInjector(0);
        var always = new RateFaultInjector(1);
        Assert.All(Enumerable.Range(0, 100), _ => Assert.False(never.ShouldFail(0)));
        Assert.All(Enumerable.Range(0, 100), _ => Assert.True(always.ShouldFail(0)));
        Assert.Equal(100, always.Failures);
        var highOnly = new RateFaultInjector(1) { MinOrder = 2 };
        Assert.False(highOnly.ShouldFail(1));
        Assert.True(highOnly.ShouldFail(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RateFaultInjector(1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RateFaultInjector(double.NaN));
    }

    [Fact]
    public void The_schedule_injector_fails_exactly_the_scheduled_calls()
    {
        static string Run(ScheduleFaultInjector s, int n) => new(Enumerable.Range(0, n).Select(_ => s.ShouldFail(0) ? 'x' : '.').ToArray());
        Assert.Equal("..x.....", Run(ScheduleFaultInjector.Nth(3), 8));
        Assert.Equal(".x.x..x.", Run(ScheduleFaultInjector.Calls(2, 4, 7), 8));
        Assert.Equal("..x..x..", Run(ScheduleFaultInjector.EveryNth(3), 8));
        Assert.Equal(".xxx....", Run(ScheduleFaultInjector.Range(2, 3), 8));
        Assert.Equal("x.x.....", Run(ScheduleFaultInjector.Pattern("x.X"), 8));
        Assert.Equal("x.xx.xx.", Run(ScheduleFaultInjector.Pattern("x.x", repeat: true), 8));
        var off = ScheduleFaultInjector.Always();
        off.Enabled = false;
        Assert.Equal("....", Run(off, 4));
        Assert.Equal(4, off.CallCount);
        Assert.Equal(0, off.Failures);
        Assert.Throws<ArgumentException>(() => ScheduleFaultInjector.Pattern("x-x"));
        Assert.Throws<ArgumentOutOfRangeException>(() => ScheduleFaultInjector.Nth(0));
    }
}
