using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// 64 pages taken and given back: <c>AllocPages</c>/<c>PutPages</c> of 64 against 64 single calls, on the consumer
/// thread. Baseline: 64 single <c>AllocPage</c> + <c>PutPage</c> (the ring path that <c>PutPages</c> also takes).
/// The <c>Shared</c> pair does the same from a thread other than the consumer (its per-CPU cache and the ring):
/// the benchmark thread on a pool whose consumer was bound on another thread. The <c>Burst</c> methods give the
/// pages back four at a time, as a TX completion does at low load.
/// </summary>
[MemoryDiagnoser]
public class BulkBenchmarks
{
    private const int N = 64;

    /// <summary>Pages per PutPages call in the burst methods (a divisor of 64): a short TX-completion burst (arbitrary).</summary>
    private const int Burst = 4;
    private PagePool _pool = null!;
    private PagePoolConsumer _consumer;
    private readonly NetMemRef[] _pages = new NetMemRef[N];
    private PagePool _shared = null!;

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(new PagePoolOptions { PoolSize = 4096, Name = "bench-bulk" });
        _consumer = _pool.BindConsumer();
        // Warm the pool so that no measured iteration reaches the provider.
        for (int i = 0; i < 4; i++)
        {
            _consumer.AllocPages(_pages);
            _pool.PutPages(_pages);
        }
        _shared = new PagePool(new PagePoolOptions { PoolSize = 4096, Name = "bench-bulk-shared" });
        var binder = new Thread(() => _shared.BindConsumer());
        binder.Start();
        binder.Join();
        for (int i = 0; i < 4; i++)
        {
            _shared.AllocPages(_pages);
            _shared.PutPages(_pages);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pool.Dispose();
        _shared.Dispose();
    }

    /// <summary>64 single AllocPage + PutPage from a thread other than the consumer.</summary>
    [Benchmark(OperationsPerInvoke = N)]
    public void SharedSingleAllocPut()
    {
        NetMemRef[] pages = _pages;
        PagePool pool = _shared;
        for (int i = 0; i < pages.Length; i++)
            pages[i] = pool.AllocPage();
        for (int i = 0; i < pages.Length; i++)
            pool.PutPage(pages[i]);
    }

    /// <summary>AllocPages + PutPages of 64 from a thread other than the consumer.</summary>
    [Benchmark(OperationsPerInvoke = N)]
    public void SharedBulkAllocPut()
    {
        _shared.AllocPages(_pages);
        _shared.PutPages(_pages);
    }

    /// <summary>
    /// AllocPages of 64, then PutPages in bursts of <see cref="Burst"/> from a thread other than the consumer: the
    /// short bursts a TX completion hands back at low load.
    /// </summary>
    [Benchmark(OperationsPerInvoke = N)]
    public void SharedBurstPut()
    {
        NetMemRef[] pages = _pages;
        PagePool pool = _shared;
        pool.AllocPages(pages);
        for (int i = 0; i < pages.Length; i += Burst)
            pool.PutPages(pages.AsSpan(i, Burst));
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = N)]
    public void SingleAllocPut()
    {
        NetMemRef[] pages = _pages;
        for (int i = 0; i < pages.Length; i++)
            pages[i] = _consumer.AllocPage();
        for (int i = 0; i < pages.Length; i++)
            _pool.PutPage(pages[i]);
    }

    [Benchmark(OperationsPerInvoke = N)]
    public void BulkAllocPut()
    {
        _consumer.AllocPages(_pages);
        _pool.PutPages(_pages);
    }

    /// <summary>AllocPages of 64, then PutPages in bursts of <see cref="Burst"/> on the consumer thread.</summary>
    [Benchmark(OperationsPerInvoke = N)]
    public void BurstPut()
    {
        NetMemRef[] pages = _pages;
        _consumer.AllocPages(pages);
        for (int i = 0; i < pages.Length; i += Burst)
            _pool.PutPages(pages.AsSpan(i, Burst));
    }

    [Benchmark(OperationsPerInvoke = N)]
    public void SingleAllocRecycleDirect()
    {
        NetMemRef[] pages = _pages;
        for (int i = 0; i < pages.Length; i++)
            pages[i] = _consumer.AllocPage();
        for (int i = 0; i < pages.Length; i++)
            _consumer.RecycleDirect(pages[i]);
    }

    [Benchmark(OperationsPerInvoke = N)]
    public void BulkAllocRecycleDirect()
    {
        NetMemRef[] pages = _pages;
        _consumer.AllocPages(pages);
        for (int i = 0; i < pages.Length; i++)
            _consumer.RecycleDirect(pages[i]);
    }
}
