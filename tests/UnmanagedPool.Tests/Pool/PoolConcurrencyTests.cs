using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

public unsafe class PoolConcurrencyTests
{
    /// <summary>
    /// Four threads, one of them the consumer, each doing 1e6 random operations: allocate, put back (direct on the
    /// consumer, through the ring elsewhere), bulk, and hand pages to another thread through a shared exchange to be
    /// put there. Each page carries an owner cookie checked when it comes back; a claim word per page catches a
    /// page handed out twice.
    /// </summary>
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Four_threads_of_random_alloc_and_put_never_hand_out_a_page_twice_and_end_with_nothing_in_flight(int order)
    {
        const int Threads = 4;
        const int OpsPerThread = 1_000_000;
        var pool = new PagePool(new PagePoolOptions { Order = order, PoolSize = 256 });
        var claims = new System.Collections.Concurrent.ConcurrentDictionary<nint, int>();
        var exchange = new System.Collections.Concurrent.ConcurrentQueue<nint>();
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var start = new Barrier(Threads);
        long totalAllocs = 0;

        void Run(int id)
        {
            var rng = new Random(1234 + id);
            PagePoolConsumer? consumer = id == 0 ? pool.BindConsumer() : null;
            start.SignalAndWait();
            var held = new List<NetMemRef>(64);
            var bulk = new NetMemRef[16];
            ulong cookie = 0xC0FFEE00UL + (ulong)id;
            long allocs = 0;

            void Claim(NetMemRef p)
            {
                if (p.IsNull) return;
                if (!claims.TryAdd((nint)p.Descriptor, id))
                    errors.Enqueue($"page 0x{(nint)p.Address:x} handed out twice (thread {id})");
                *(ulong*)p.Address = cookie;
                *(ulong*)(p.Address + p.Size - 8) = cookie;
                held.Add(p);
                allocs++;
            }

            void Check(NetMemRef p, ulong expected)
            {
                if (*(ulong*)p.Address != expected || *(ulong*)(p.Address + p.Size - 8) != expected)
                    errors.Enqueue($"cookie mismatch on 0x{(nint)p.Address:x}");
                if (!claims.TryRemove((nint)p.Descriptor, out _))
                    errors.Enqueue($"page 0x{(nint)p.Address:x} returned but not claimed");
            }

            for (int op = 0; op < OpsPerThread; op++)
            {
                int r = rng.Next(100);
                if (r < 40 || held.Count == 0)
                {
                    Claim(consumer is { } c ? c.AllocPage() : pool.AllocPage());
                }
                else if (r < 45)
                {
                    int n = pool.AllocPages(bulk.AsSpan(0, rng.Next(1, 17)));
                    for (int i = 0; i < n; i++) Claim(bulk[i]);
                }
                else if (r < 80)
                {
                    int k = rng.Next(held.Count);
                    var p = held[k];
                    held[k] = held[^1];
                    held.RemoveAt(held.Count - 1);
                    Check(p, cookie);
                    if (consumer is { } c2 && (r & 1) == 0) c2.RecycleDirect(p);
                    else pool.PutPage(p, allowDirect: (r & 1) == 0);
                }
                else if (r < 90)
                {
                    // Cross-thread: hand a page to whoever dequeues it; they put it back.
                    int k = rng.Next(held.Count);
                    var p = held[k];
                    held[k] = held[^1];
                    held.RemoveAt(held.Count - 1);
                    *(ulong*)p.Address = 0xEEEEEEEEUL;
                    *(ulong*)(p.Address + p.Size - 8) = 0xEEEEEEEEUL;
                    exchange.Enqueue((nint)p.Descriptor);
                }
                else if (exchange.TryDequeue(out nint d))
                {
                    var p = new NetMemRef((NetMem*)d);
                    Check(p, 0xEEEEEEEEUL);
                    pool.PutPage(p);
                }
                if (held.Count > 48)
                {
                    var p = held[0];
                    held.RemoveAt(0);
                    Check(p, cookie);
                    pool.PutPage(p);
                }
            }
            foreach (var p in held)
            {
                Check(p, cookie);
                pool.PutPage(p);
            }
            Interlocked.Add(ref totalAllocs, allocs);
        }

        var threads = Enumerable.Range(0, Threads).Select(i => new Thread(() =>
        {
            try { Run(i); }
            catch (Exception e) { errors.Enqueue(e.ToString()); }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        while (exchange.TryDequeue(out nint d))
        {
            var p = new NetMemRef((NetMem*)d);
            claims.TryRemove(d, out _);
            pool.PutPage(p);
        }
        Assert.Empty(errors);
        Assert.Empty(claims);
        var s = pool.GetStats();
        StatsAssert.Consistent(s);
        Assert.True(totalAllocs > Threads * OpsPerThread / 3);
        Assert.True(s.AllocFast + s.AllocRefill + s.AllocSlow + s.AllocSlowHighOrder > 0);
        Assert.Equal(s.Pooled, s.InFlight); // nothing held by users: everything in flight sits in the pool
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.GetStats().InFlight);
    }
}
