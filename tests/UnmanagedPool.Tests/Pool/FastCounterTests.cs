using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Pool;

/// <summary>
/// The alloc and recycle fast paths keep no counter of their own: <c>AllocFast</c> and <c>RecycleCached</c> come
/// from the alloc cache's word and the pages every other path moved in and out of the cache. These tests drive
/// every such path and check the two counters against a count kept by the test.
/// </summary>
public unsafe class FastCounterTests
{
    public enum Kind { Plain, DmaSync, Debug }

    /// <summary>
    /// Plain: both fast paths run. DMA sync: the recycle fast path is blocked in the cache word (every put syncs),
    /// the alloc one runs. Debug: both are blocked and the cache's count lives beside the word.
    /// </summary>
    [Theory]
    [InlineData(Kind.Plain)]
    [InlineData(Kind.DmaSync)]
    [InlineData(Kind.Debug)]
    public void Fast_counters_stay_exact_through_every_path_that_moves_pages_in_and_out_of_the_alloc_cache(Kind kind)
    {
        var options = new PagePoolOptions { LowWaterMark = 16 };
        if (kind == Kind.DmaSync)
        {
            options.Flags = PagePoolFlags.DmaMap | PagePoolFlags.DmaSyncDev;
            options.MaxLen = 2048;
        }
        options.DebugMode = kind == Kind.Debug;
        using var pool = new PagePool(options);
        var consumer = pool.BindConsumer();
        var rng = new Random(7);
        var held = new List<NetMemRef>();
        var bulk = new NetMemRef[200];
        long allocated = 0, directRecycles = 0;

        for (int step = 0; step < 60_000; step++)
        {
            int r = rng.Next(1000);
            if (r < 420 || held.Count == 0)
            {
                NetMemRef page = consumer.AllocPage();
                Assert.False(page.IsNull);
                held.Add(page);
                allocated++;
            }
            else if (r < 450)
            {
                int n = consumer.AllocPages(bulk.AsSpan(0, rng.Next(1, bulk.Length)));
                held.AddRange(bulk.AsSpan(0, n).ToArray());
                allocated += n;
            }
            else if (r < 455)
            {
                // A burst past the alloc cache's size: the recycles after the 128th find it full.
                int n = consumer.AllocPages(bulk);
                allocated += n;
                for (int i = 0; i < n; i++)
                    consumer.RecycleDirect(bulk[i]);
                directRecycles += n;
            }
            else if (r < 860)
            {
                NetMemRef page = TakeRandom(held, rng);
                consumer.RecycleDirect(page);
                directRecycles++;
            }
            else if (r < 995)
            {
                consumer.PutPage(TakeRandom(held, rng), -1, allowDirect: false);
            }
            else if (r < 998)
            {
                pool.Trim(); // on the consumer: empties the alloc cache and refills it with what it keeps
            }
            else
            {
                pool.UpdateNid(-1); // flushes the alloc cache to the provider
            }
        }

        PagePoolStats s = pool.GetStats();
        // Every consumer allocation is exactly one of: a cache hit, the page after a refill, the page of a slow bulk.
        Assert.Equal(allocated, s.AllocFast + s.AllocRefill + s.AllocSlow);
        // Every direct recycle of a single-reference page lands in the alloc cache, or in the ring when it is full.
        Assert.Equal(directRecycles, s.RecycleCached + s.RecycleCacheFull);
        Assert.True(s.AllocFast > allocated / 2, $"AllocFast {s.AllocFast} of {allocated}");
        Assert.True(s.RecycleCached > 0 && s.RecycleCacheFull > 0, $"cached {s.RecycleCached}, cache_full {s.RecycleCacheFull}");

        foreach (NetMemRef page in held)
            consumer.RecycleDirect(page);
        Assert.Equal(0, pool.InFlight - pool.GetStats().Pooled);
    }

    [Fact]
    public void Fast_counters_read_from_another_thread_while_the_consumer_works_never_go_backwards()
    {
        using var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        // The reader is a thread of its own, so the consumer stays on this one.
        bool stop = false;
        string? failure = null;
        long reads = 0;
        var reader = new Thread(() =>
        {
            long fast = 0, cached = 0;
            while (!Volatile.Read(ref stop)) // Volatile: the test thread sets it when done
            {
                PagePoolStats s = pool.GetStats();
                if (s.AllocFast < fast || s.RecycleCached < cached)
                {
                    // Volatile: the test thread polls it while it works.
                    Volatile.Write(ref failure, $"went backwards: fast {fast} -> {s.AllocFast}, cached {cached} -> {s.RecycleCached}");
                    return;
                }
                fast = s.AllocFast;
                cached = s.RecycleCached;
                Interlocked.Increment(ref reads); // Interlocked: read by the test thread
            }
        });
        reader.Start();

        var held = new NetMemRef[AllocBurst];
        long allocated = 0;
        void Burst()
        {
            // Larger than the alloc cache: refills, slow bulks and cache-full recycles between the fast ones.
            for (int i = 0; i < held.Length; i++)
                held[i] = consumer.AllocPage();
            allocated += held.Length;
            for (int i = 0; i < held.Length; i++)
                consumer.RecycleDirect(held[i]);
        }
        var until = DateTime.UtcNow.AddMilliseconds(500);
        while (DateTime.UtcNow < until)
            Burst();
        // However late the reader thread got a CPU, it reads a few times while the consumer still works (Volatile and
        // Interlocked reads: the reader thread writes both).
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Interlocked.Read(ref reads) < 10 && Volatile.Read(ref failure) == null && DateTime.UtcNow < deadline)
            Burst();
        Volatile.Write(ref stop, true); // Volatile: the reader polls it
        reader.Join();
        Assert.Null(failure);
        Assert.True(Interlocked.Read(ref reads) >= 10, $"the reader read {reads} times");

        PagePoolStats end = pool.GetStats();
        Assert.Equal(allocated, end.AllocFast + end.AllocRefill + end.AllocSlow);
    }

    private const int AllocBurst = 200;

    private static NetMemRef TakeRandom(List<NetMemRef> held, Random rng)
    {
        int k = rng.Next(held.Count);
        NetMemRef page = held[k];
        held[k] = held[^1];
        held.RemoveAt(held.Count - 1);
        return page;
    }
}
