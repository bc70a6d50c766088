using UnmanagedPool.Internal;

namespace UnmanagedPool.Tests.Pool;

public class PtrRingTests
{
    [Fact]
    public void The_ring_rounds_its_capacity_up_to_a_power_of_two_and_stops_at_full()
    {
        var ring = new PtrRing(100);
        Assert.Equal(128, ring.Capacity);
        var items = Enumerable.Range(1, 200).Select(i => (nint)i).ToArray();
        Assert.Equal(128, ring.EnqueueBurst(items));
        Assert.Equal(128, ring.Count);
        Assert.False(ring.TryEnqueue(999));
        var outBuf = new nint[50];
        Assert.Equal(50, ring.DequeueBurst(outBuf));
        Assert.Equal(items.Take(50), outBuf);
        Assert.Equal(50, ring.EnqueueBurst(items.AsSpan(128)));
        var rest = new nint[300];
        Assert.Equal(128, ring.DequeueBurst(rest));
        Assert.Equal(items.Skip(50).Take(128), rest.Take(128));
        Assert.True(ring.IsEmpty);
        Assert.False(ring.TryDequeue(out _));
    }

    [Fact]
    public void Indexes_wrap_around_without_losing_order()
    {
        var ring = new PtrRing(8);
        var buf = new nint[5];
        nint next = 1, expect = 1;
        for (int round = 0; round < 10_000; round++)
        {
            for (int i = 0; i < 5; i++) buf[i] = next++;
            Assert.Equal(5, ring.EnqueueBurst(buf));
            Assert.Equal(5, ring.DequeueBurst(buf));
            foreach (var v in buf) Assert.Equal(expect++, v);
        }
    }

    [Fact]
    public void Four_threads_of_bulk_enqueue_and_dequeue_see_every_element_exactly_once()
    {
        const int Threads = 4;
        const int PerProducer = 250_000;
        var ring = new PtrRing(1024);
        var seen = new int[Threads * PerProducer + 1];
        long consumedTotal = 0;
        var threads = new List<Thread>();
        var errors = new List<Exception>();
        for (int t = 0; t < Threads; t++)
        {
            int id = t;
            threads.Add(new Thread(() =>
            {
                try
                {
                    var rng = new Random(id);
                    var batch = new nint[32];
                    var got = new nint[32];
                    int produced = 0;
                    while (produced < PerProducer || Interlocked.Read(ref consumedTotal) < (long)Threads * PerProducer)
                    {
                        if (produced < PerProducer)
                        {
                            int n = Math.Min(rng.Next(1, 33), PerProducer - produced);
                            for (int i = 0; i < n; i++)
                                batch[i] = 1 + id * PerProducer + produced + i;
                            int done = ring.EnqueueBurst(batch.AsSpan(0, n));
                            produced += done;
                        }
                        int m = ring.DequeueBurst(got.AsSpan(0, rng.Next(1, 33)));
                        for (int i = 0; i < m; i++)
                            Interlocked.Increment(ref seen[got[i]]);
                        Interlocked.Add(ref consumedTotal, m);
                    }
                }
                catch (Exception e) { lock (errors) errors.Add(e); }
            }));
        }
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(errors);
        Assert.Equal((long)Threads * PerProducer, consumedTotal);
        Assert.Equal(0, seen[0]);
        for (int i = 1; i < seen.Length; i++)
            if (seen[i] != 1)
                Assert.Fail($"element {i} seen {seen[i]} times");
        Assert.True(ring.IsEmpty);
    }
}
