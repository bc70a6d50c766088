using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// The consumer fast path (alloc from the alloc cache, recycle_direct) for buffers of order 0 to 3 (4 to 32 KiB).
/// Baseline: alloc + recycle touching nothing; the other method writes the first and last word of each buffer.
/// </summary>
[MemoryDiagnoser]
public class OrderBenchmarks
{
    private const int N = 64;
    private PagePool _pool = null!;
    private PagePoolConsumer _consumer;
    private readonly NetMemRef[] _pages = new NetMemRef[N];

    [Params(0, 1, 2, 3)]
    public int Order { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(new PagePoolOptions { Order = Order, Name = $"bench-order{Order}" });
        _consumer = _pool.BindConsumer();
        for (int i = 0; i < N; i++)
            _pages[i] = _consumer.AllocPage();
        for (int i = 0; i < N; i++)
            _consumer.RecycleDirect(_pages[i]);
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = N)]
    public void AllocRecycle()
    {
        PagePoolConsumer c = _consumer;
        for (int i = 0; i < N; i++)
            c.RecycleDirect(c.AllocPage());
    }

    [Benchmark(OperationsPerInvoke = N)]
    public unsafe void AllocWriteRecycle()
    {
        PagePoolConsumer c = _consumer;
        for (int i = 0; i < N; i++)
        {
            NetMemRef page = c.AllocPage();
            byte* a = page.Address;
            *(long*)a = i;
            *(long*)(a + page.Size - sizeof(long)) = i;
            c.RecycleDirect(page);
        }
    }

    [Benchmark(OperationsPerInvoke = N)]
    public void AllocManyRecycleMany()
    {
        PagePoolConsumer c = _consumer;
        NetMemRef[] pages = _pages;
        for (int i = 0; i < N; i++)
            pages[i] = c.AllocPage();
        for (int i = 0; i < N; i++)
            c.RecycleDirect(pages[i]);
    }
}
