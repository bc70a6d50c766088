using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Native;

public sealed unsafe class PageProviderConcurrencyTests
{
    private const int Threads = 2;
    private const int CyclesPerThread = 1_000_000;
    private const int MaxBulk = 32;
    private const int MaxHeld = 64;

    /// <summary>
    /// Two threads, each 1,000,000 take/give cycles (a take call then a give call, each single or bulk, giving back
    /// pages taken in earlier cycles too). Ownership is proven twice: an owner word per page claimed and released
    /// with compare-and-swap, and an owner cookie written into the page's first and last 8 bytes and checked when
    /// the page goes back.
    /// </summary>
    [Fact]
    public void Two_threads_taking_and_giving_a_million_times_each_never_share_a_page()
    {
        // One region only (the limit), so an owner word per page index covers every page the provider can hand out.
        using var provider = new PageProvider(memoryLimit: 1L << PageConstants.DefaultRegionShift);
        int pageCount = 1 << (PageConstants.DefaultRegionShift - PageConstants.PageShift);
        var owners = new int[pageCount];
        long regionBase = 0;
        Exception? failure = null;
        using var start = new Barrier(Threads);

        void Work(int id)
        {
            try
            {
                var rng = new XorShift((ulong)(0x9E3779B97F4A7C15UL * (ulong)id));
                var held = new List<NetMemRef>(MaxHeld + MaxBulk);
                var batch = new NetMemRef[MaxBulk];
                ulong sequence = 0;
                start.SignalAndWait();

                for (int cycle = 0; cycle < CyclesPerThread && Volatile.Read(ref failure) == null; cycle++)
                {
                    // Take: three in four single, else a bulk of 2..32.
                    int n = rng.Next(4) != 0 ? 1 : 2 + rng.Next(MaxBulk - 1);
                    if (n == 1)
                    {
                        batch[0] = provider.Take();
                        Assert.False(batch[0].IsNull, "Take returned null within the limit.");
                    }
                    else
                    {
                        Assert.Equal(n, provider.TakeBulk(batch.AsSpan(0, n)));
                    }
                    for (int i = 0; i < n; i++)
                    {
                        NetMemRef page = batch[i];
                        Interlocked.CompareExchange(ref regionBase, page.RegionBase, 0);
                        Assert.Equal(Volatile.Read(ref regionBase), (long)page.RegionBase);
                        int was = Interlocked.CompareExchange(ref owners[page.Index], id, 0);
                        Assert.True(was == 0, $"Page {page.Index} handed to thread {id} while thread {was} holds it.");
                        ulong cookie = ((ulong)id << 48) | ++sequence;
                        *(ulong*)page.Address = cookie;
                        *(ulong*)(page.Address + PageConstants.PageSize - 8) = cookie;
                        held.Add(page);
                    }

                    // Give: one or a bulk, from random positions, more when many are held.
                    int m = held.Count > MaxHeld ? held.Count - MaxHeld / 2 : rng.Next(4) != 0 ? 1 : 1 + rng.Next(Math.Min(held.Count, MaxBulk));
                    m = Math.Min(m, Math.Min(held.Count, MaxBulk));
                    for (int i = 0; i < m; i++)
                    {
                        int at = rng.Next(held.Count);
                        NetMemRef page = held[at];
                        held[at] = held[^1];
                        held.RemoveAt(held.Count - 1);
                        Release(page, id, owners);
                        batch[i] = page;
                    }
                    if (m == 1)
                        provider.Give(batch[0]);
                    else
                        provider.GiveBulk(batch.AsSpan(0, m));
                }

                foreach (NetMemRef page in held)
                    Release(page, id, owners);
                foreach (NetMemRef page in held)
                    provider.Give(page);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
            }
        }

        var threads = new Thread[Threads];
        for (int t = 0; t < Threads; t++)
        {
            int id = t + 1;
            threads[t] = new Thread(() => Work(id)) { IsBackground = true, Name = $"provider-stress-{id}" };
            threads[t].Start();
        }
        foreach (Thread thread in threads)
            thread.Join();

        if (failure != null)
            throw new Xunit.Sdk.XunitException("A worker failed: " + failure);
        Assert.Equal(0, provider.PagesInUse);
        Assert.All(owners, o => Assert.Equal(0, o));
        Assert.Equal(1, provider.RegionCount);
        Assert.Equal(0, provider.FailedAllocations);
    }

    /// <summary>Checks the cookie the owner wrote and frees the owner word, before the page goes back.</summary>
    private static void Release(NetMemRef page, int id, int[] owners)
    {
        ulong head = *(ulong*)page.Address;
        ulong tail = *(ulong*)(page.Address + PageConstants.PageSize - 8);
        Assert.True(head >> 48 == (ulong)id && head == tail, $"Page {page.Index} of thread {id} was written by another owner (0x{head:x}, 0x{tail:x}).");
        int was = Interlocked.CompareExchange(ref owners[page.Index], 0, id);
        Assert.True(was == id, $"Page {page.Index} given back by thread {id} but owned by {was}.");
    }

    /// <summary>Deterministic generator (xorshift64*), one per thread.</summary>
    private struct XorShift(ulong seed)
    {
        private ulong _state = seed == 0 ? 1 : seed;

        public int Next(int bound)
        {
            _state ^= _state >> 12;
            _state ^= _state << 25;
            _state ^= _state >> 27;
            return (int)(((_state * 0x2545F4914F6CDD1DUL) >> 33) % (ulong)bound);
        }
    }
}
