using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// The fast path (AllocPage + RecycleDirect on the consumer handle, <see cref="PagePoolBenchmarks.FastPath"/>'s
/// shape) of a pool over its own region provider against a pool over a <see cref="UmemProvider"/>: the provider
/// is reached only on slow paths, so the two should run alike (target: UMEM within 1.1× of regions).
/// </summary>
[MemoryDiagnoser]
public class MemoryProviderBenchmarks
{
    private const int Ops = 1024;

    private PagePool _regions = null!;
    private PagePoolConsumer _regionsConsumer;
    private UmemProvider _umem = null!;
    private PagePool _umemPool = null!;
    private PagePoolConsumer _umemConsumer;

    [GlobalSetup]
    public void Setup()
    {
        _regions = new PagePool(new PagePoolOptions { Name = "bench-regions" });
        _umem = new UmemProvider(16 << 20);
        _umemPool = new PagePool(new PagePoolOptions { Name = "bench-umem", MemoryProvider = _umem });
        Bind();
    }

    private void Bind()
    {
        _regionsConsumer = _regions.BindConsumer();
        _umemConsumer = _umemPool.BindConsumer();
    }

    private void EnsureConsumer()
    {
        if (_regionsConsumer.ThreadId != Environment.CurrentManagedThreadId)
            Bind();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        EnsureConsumer();
        _regions.Dispose();
        _umemPool.Dispose();
        _umem.Dispose();
    }

    /// <summary>A pool over its own <see cref="PageProvider"/>.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Ops)]
    public void FastPathRegions()
    {
        EnsureConsumer();
        PagePoolConsumer consumer = _regionsConsumer;
        for (int i = 0; i < Ops; i++)
        {
            NetMemRef page = consumer.AllocPage();
            consumer.RecycleDirect(page);
        }
    }

    /// <summary>A pool over a <see cref="UmemProvider"/>.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void FastPathUmem()
    {
        EnsureConsumer();
        PagePoolConsumer consumer = _umemConsumer;
        for (int i = 0; i < Ops; i++)
        {
            NetMemRef page = consumer.AllocPage();
            consumer.RecycleDirect(page);
        }
    }
}
