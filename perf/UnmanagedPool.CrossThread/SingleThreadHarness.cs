using System.Runtime.CompilerServices;
using UnmanagedPool.Native;
using UnmanagedPool.Perf;

namespace UnmanagedPool.CrossThread;

/// <summary>
/// The single-thread shapes of <c>PagePoolBenchmarks</c>, one 4 KiB page got and given back per operation: the
/// LIFO floor, the pool's fast path (alloc cache + recycle_direct) and its ring path (PutPage without direct
/// recycling: per-CPU cache and ring). Consumer thread only: the thread that constructs it.
/// </summary>
internal sealed unsafe class SingleThreadHarness : IDisposable
{
    /// <summary>Names of the methods; the first is the baseline of the group's ratios.</summary>
    public static readonly string[] Methods = ["Floor", "FastPath", "RingPath"];

    private const int FloorPages = 128;

    /// <summary>
    /// Operations per call of a method, as <c>PagePoolBenchmarks</c>' <c>OperationsPerInvoke</c>, with the same loop
    /// over this constant. Short calls let the runtime profile each method in its first tier and compile its final
    /// code from that profile, as it does for the benchmark and for a packet loop's per-batch calls: one call per
    /// round ran code compiled once without a profile, whose block layout changed with the methods around it
    /// (FastPath 1.38 x Floor with RingPath in the rounds, 1.60 x without). A loop over a count passed in compiled
    /// with its test at the top or one more register, and cost FastPath about 0.1 ns more than the benchmark's loop,
    /// Floor nothing. A round runs the nearest whole number of calls to the pages asked for, at least one.
    /// </summary>
    private const int OpsPerCall = 1024;

    private readonly PageProvider _floorProvider = new();
    private readonly LifoFloor _floor = new(FloorPages);
    private readonly PagePool _pool;
    private readonly PagePoolConsumer _consumer;

    /// <summary>Creates the floor's pages and the pool, binding the calling thread as its consumer.</summary>
    public SingleThreadHarness()
    {
        for (int i = 0; i < FloorPages; i++)
            _floor.Return((NetMem*)_floorProvider.Take().Descriptor);
        _pool = new PagePool(new PagePoolOptions { Name = "crossthread-single" });
        _consumer = _pool.BindConsumer();
    }

    /// <summary>
    /// Runs method <paramref name="method"/> (an index into <see cref="Methods"/>) for <paramref name="pages"/>
    /// operations: the elapsed <see cref="System.Diagnostics.Stopwatch"/> ticks and the managed bytes allocated.
    /// </summary>
    public (long Ticks, long Bytes) Run(int method, int pages)
    {
        long bytes = GC.GetAllocatedBytesForCurrentThread();
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        int calls = Math.Max(1, (pages + OpsPerCall / 2) / OpsPerCall);
        for (int c = 0; c < calls; c++)
        {
            switch (method)
            {
                case 0:
                    Floor();
                    break;
                case 1:
                    FastPath();
                    break;
                default:
                    RingPath();
                    break;
            }
        }
        long t1 = System.Diagnostics.Stopwatch.GetTimestamp();
        // Scaled to the operations asked for (the caller divides by them): the calls ran the nearest whole number of
        // OpsPerCall, the same for every method of the group.
        long ticks = (long)Math.Round((double)(t1 - t0) * pages / ((long)calls * OpsPerCall));
        return (ticks, GC.GetAllocatedBytesForCurrentThread() - bytes);
    }

    /// <summary>A plain, unsynchronised array LIFO: a get that pops and writes one descriptor word, a return that pushes.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Floor()
    {
        LifoFloor floor = _floor;
        for (int i = 0; i < OpsPerCall; i++)
        {
            NetMem* d = floor.Get();
            floor.Return(d);
        }
    }

    /// <summary>AllocPage + RecycleDirect on the consumer handle (the kernel's fast path).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void FastPath()
    {
        PagePoolConsumer consumer = _consumer;
        for (int i = 0; i < OpsPerCall; i++)
        {
            NetMemRef page = consumer.AllocPage();
            consumer.RecycleDirect(page);
        }
    }

    /// <summary>AllocPage + PutPage(allowDirect: false): recycling through the per-CPU cache and the ring.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RingPath()
    {
        PagePoolConsumer consumer = _consumer;
        for (int i = 0; i < OpsPerCall; i++)
        {
            NetMemRef page = consumer.AllocPage();
            consumer.PutPage(page, -1, allowDirect: false);
        }
    }

    /// <summary>Disposes the pool and gives the floor's pages back.</summary>
    public void Dispose()
    {
        _pool.Dispose();
        for (int i = 0; i < FloorPages; i++)
            _floorProvider.Give(new NetMemRef(_floor.Get()));
        _floorProvider.Dispose();
    }
}
