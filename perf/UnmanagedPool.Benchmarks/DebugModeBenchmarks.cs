using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// The consumer fast path (alloc + recycle_direct of one page) with debug mode off and on, against a floor of a
/// plain LIFO of page pointers writing one descriptor word per operation. Target: FastPath ≤ 1.3 × Floor.
/// </summary>
[MemoryDiagnoser]
public unsafe class DebugModeBenchmarks
{
    private const int Ops = 1024;

    private PagePool _pool = null!;
    private PagePoolConsumer _consumer;
    private PagePool _debugPool = null!;
    private PagePoolConsumer _debugConsumer;
    private nint[] _floorStack = null!;
    private int _floorCount;
    private NetMem* _floorTable;

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(new PagePoolOptions { DebugMode = false, DebugLevel = PagePoolDebugLevel.Off });
        _consumer = _pool.BindConsumer();
        _debugPool = new PagePool(new PagePoolOptions { DebugLevel = PagePoolDebugLevel.Simple });
        _debugConsumer = _debugPool.BindConsumer();
        // Warm both pools so the loop never leaves the alloc cache.
        _consumer.RecycleDirect(_consumer.AllocPage());
        _debugConsumer.RecycleDirect(_debugConsumer.AllocPage());

        _floorTable = (NetMem*)NativeMemory.AlignedAlloc(128 * (nuint)sizeof(NetMem), 64);
        _floorStack = new nint[128];
        for (int i = 0; i < 128; i++)
            _floorStack[i] = (nint)(_floorTable + i);
        _floorCount = 128;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pool.Dispose();
        _debugPool.Dispose();
        NativeMemory.AlignedFree(_floorTable);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Ops)]
    public long Floor()
    {
        long sum = 0;
        nint[] stack = _floorStack;
        for (int i = 0; i < Ops; i++)
        {
            NetMem* d = (NetMem*)stack[--_floorCount];
            d->PpRefCount = 1;
            sum += (long)d;
            stack[_floorCount++] = (nint)d;
        }
        return sum;
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public long FastPath()
    {
        long sum = 0;
        PagePoolConsumer c = _consumer;
        for (int i = 0; i < Ops; i++)
        {
            NetMemRef p = c.AllocPage();
            sum += (long)p.Descriptor;
            c.RecycleDirect(p);
        }
        return sum;
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public long FastPathDebug()
    {
        long sum = 0;
        PagePoolConsumer c = _debugConsumer;
        for (int i = 0; i < Ops; i++)
        {
            NetMemRef p = c.AllocPage();
            sum += (long)p.Descriptor;
            c.RecycleDirect(p);
        }
        return sum;
    }
}
