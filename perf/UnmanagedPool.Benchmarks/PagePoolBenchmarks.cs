using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;
using UnmanagedPool.Perf;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// The kernel's bench_page_pool_simple in one run: one 4 KiB buffer got and given back per operation, on the
/// pool's fast path (alloc cache + recycle_direct), ring path, slow path, against a plain LIFO floor and the
/// allocators a .NET user would otherwise pick.
/// </summary>
[MemoryDiagnoser]
public unsafe class PagePoolBenchmarks
{
    private const int Ops = 1024;

    private PageProvider _floorProvider = null!;
    private LifoFloor _floor = null!;

    private PagePool _pool = null!;
    private PagePoolConsumer _consumer;
    private PagePool _slowPool = null!;
    private PagePoolConsumer _slowConsumer;
    private ConcurrentQueue<nint> _queue = null!;
    private nint[] _queuePages = null!;

    [GlobalSetup]
    public void Setup()
    {
        _floorProvider = new PageProvider();
        _floor = new LifoFloor(128);
        for (int i = 0; i < 128; i++)
            _floor.Return((NetMem*)_floorProvider.Take().Descriptor);

        _pool = new PagePool(new PagePoolOptions { Name = "bench-fast" });
        _slowPool = new PagePool(new PagePoolOptions { Name = "bench-slow" });
        Bind();

        _queue = new ConcurrentQueue<nint>();
        _queuePages = new nint[128];
        for (int i = 0; i < _queuePages.Length; i++)
        {
            _queuePages[i] = (nint)NativeMemory.AlignedAlloc(4096, 4096);
            _queue.Enqueue(_queuePages[i]);
        }
    }

    private void Bind()
    {
        _consumer = _pool.BindConsumer();
        _slowConsumer = _slowPool.BindConsumer();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void EnsureConsumer()
    {
        if (_consumer.ThreadId != Environment.CurrentManagedThreadId)
            Bind();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        EnsureConsumer();
        _pool.Dispose();
        _slowPool.Dispose();
        for (int i = 0; i < 128; i++)
            _floorProvider.Give(new NetMemRef(_floor.Get()));
        _floorProvider.Dispose();
        while (_queue.TryDequeue(out _)) { }
        foreach (nint p in _queuePages)
            NativeMemory.AlignedFree((void*)p);
    }

    /// <summary>
    /// The floor: a plain, unsynchronised array LIFO of pages with the shape of any pool (a get that pops and
    /// writes one descriptor word, a return that pushes), with no checks and no statistics.
    /// </summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Ops)]
    public void Floor()
    {
        LifoFloor floor = _floor;
        for (int i = 0; i < Ops; i++)
        {
            NetMem* d = floor.Get();
            floor.Return(d);
        }
    }

    /// <summary>AllocPage + RecycleDirect on the consumer handle (the kernel's fast path).</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void FastPath()
    {
        EnsureConsumer();
        PagePoolConsumer consumer = _consumer;
        for (int i = 0; i < Ops; i++)
        {
            NetMemRef page = consumer.AllocPage();
            consumer.RecycleDirect(page);
        }
    }

    /// <summary>AllocPage + PutPage(allowDirect: false): recycling through the per-CPU cache and the ring.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void RingPath()
    {
        EnsureConsumer();
        PagePoolConsumer consumer = _consumer;
        for (int i = 0; i < Ops; i++)
        {
            NetMemRef page = consumer.AllocPage();
            consumer.PutPage(page, -1, allowDirect: false);
        }
    }

    /// <summary>AllocPage + ReleasePage: every page comes from and goes back to the provider.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void SlowPath()
    {
        EnsureConsumer();
        PagePoolConsumer consumer = _slowConsumer;
        PagePool pool = _slowPool;
        for (int i = 0; i < Ops; i++)
        {
            NetMemRef page = consumer.AllocPage();
            pool.ReleasePage(page);
        }
    }

    /// <summary>A ConcurrentQueue of page pointers, the obvious managed pool of native pages.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void ConcurrentQueuePool()
    {
        ConcurrentQueue<nint> q = _queue;
        for (int i = 0; i < Ops; i++)
        {
            q.TryDequeue(out nint p);
            *(long*)p = i;
            q.Enqueue(p);
        }
    }

    /// <summary>ArrayPool&lt;byte&gt;.Shared Rent/Return of 4096 bytes.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void ArrayPoolShared()
    {
        ArrayPool<byte> pool = ArrayPool<byte>.Shared;
        for (int i = 0; i < Ops; i++)
        {
            byte[] a = pool.Rent(4096);
            a[0] = (byte)i;
            pool.Return(a);
        }
    }

    /// <summary>NativeMemory.AlignedAlloc/AlignedFree of one 4 KiB page.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void NativeAlignedAlloc()
    {
        for (int i = 0; i < Ops; i++)
        {
            void* p = NativeMemory.AlignedAlloc(4096, 4096);
            *(long*)p = i;
            NativeMemory.AlignedFree(p);
        }
    }
}
