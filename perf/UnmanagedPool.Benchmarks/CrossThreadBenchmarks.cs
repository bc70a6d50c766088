using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;
using UnmanagedPool.Perf;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// One thread allocates, another puts back: the benchmark thread takes pages and hands each to a worker thread
/// through a single-producer single-consumer channel, published in batches of 16 as a NAPI poll hands work on;
/// the worker returns them to the pool. Time per page is the inverse of pages per second; the channel is the
/// same for both pools, so the ratio compares the pools. A side that waits spins and starts its backoff again after
/// each item it moves, so a run measures the two threads working, not one of them parked in a yield.
/// </summary>
/// <remarks>
/// Kept for its allocation column; its times are <b>not comparable across methods</b>. BenchmarkDotNet runs each
/// method in a process of its own, and the core-to-core latency between the two threads changes from minute to
/// minute on a shared host (the hand-off alone: 4.7, 8–10 or 26–30 ns/page), so two methods may be measured in
/// different host states. To rank the cross-thread methods use <c>perf/UnmanagedPool.CrossThread</c>, which runs
/// them interleaved in one process and reports medians of per-round ratios.
/// </remarks>
[MemoryDiagnoser]
public unsafe class CrossThreadBenchmarks
{
    private const int Pages = 1 << 16;

    private PagePool _pool = null!;
    private PagePoolConsumer _consumer;
    private ConcurrentQueue<nint> _queue = null!;
    private nint[] _queuePages = null!;
    private SpscChannel _toWorker = null!;
    private Thread _worker = null!;
    private volatile int _mode;     // 0 idle, 1 pagepool, 2 queue, 3 pagepool bulk, 4 channel only, -1 stop
    private volatile int _workerMode; // the mode the worker has started an iteration in (see SetMode)

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(new PagePoolOptions { PoolSize = 4096, Name = "bench-cross" });
        _consumer = _pool.BindConsumer();
        _queue = new ConcurrentQueue<nint>();
        _queuePages = new nint[4096];
        for (int i = 0; i < _queuePages.Length; i++)
        {
            _queuePages[i] = (nint)NativeMemory.AlignedAlloc(4096, 4096);
            _queue.Enqueue(_queuePages[i]);
        }
        _toWorker = new SpscChannel(1024);
        _worker = new Thread(WorkerLoop) { IsBackground = true, Name = "cross-thread-putter" };
        _worker.Start();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _mode = -1;
        _worker.Join();
        if (_consumer.ThreadId != Environment.CurrentManagedThreadId)
            _consumer = _pool.BindConsumer();
        _pool.Dispose();
        while (_queue.TryDequeue(out _)) { }
        foreach (nint p in _queuePages)
            NativeMemory.AlignedFree((void*)p);
    }

    private void WorkerLoop()
    {
        var spin = new SpinWait();
        var burst = new NetMemRef[32];
        while (true)
        {
            int mode = _mode;
            if (mode < 0)
                return;
            if (_workerMode != mode)
                _workerMode = mode;
            if (mode == 3)
            {
                int n = 0;
                while (n < burst.Length && _toWorker.TryRead(out nint b))
                    burst[n++] = new NetMemRef((NetMem*)b);
                if (n > 0)
                {
                    _pool.PutPages(burst.AsSpan(0, n));
                    spin = default;
                }
                else
                {
                    spin.SpinOnce(sleep1Threshold: -1);
                }
                continue;
            }
            if (_toWorker.TryRead(out nint item))
            {
                if (mode == 1)
                    _pool.PutPage(new NetMemRef((NetMem*)item));
                else if (mode == 2)
                    _queue.Enqueue(item);
                spin = default;
            }
            else
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }

    /// <summary>
    /// Switches the worker to <paramref name="mode"/> and waits until it has started an iteration in it, so that a
    /// burst the worker began in the previous mode never takes a page of this one (the channel is empty between
    /// methods: each ends with <see cref="Drain"/>). Needed only where methods share a process (in-process toolchains).
    /// </summary>
    private void SetMode(int mode)
    {
        _mode = mode;
        var spin = new SpinWait();
        while (_workerMode != mode)
            spin.SpinOnce(sleep1Threshold: -1);
    }

    private void Drain()
    {
        _toWorker.Flush();
        var spin = new SpinWait();
        while (!_toWorker.IsEmpty)
            spin.SpinOnce(sleep1Threshold: -1);
    }

    /// <summary>The ConcurrentQueue pool: dequeue here, enqueue on the worker.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public void ConcurrentQueuePool()
    {
        SetMode(2);
        ConcurrentQueue<nint> q = _queue;
        SpscChannel ch = _toWorker;
        var spin = new SpinWait();
        for (int i = 0; i < Pages; i++)
        {
            nint p;
            while (!q.TryDequeue(out p))
                spin.SpinOnce(sleep1Threshold: -1);
            *(long*)p = i;
            while (!ch.TryWrite(p))
                spin.SpinOnce(sleep1Threshold: -1);
            spin = default;
        }
        Drain();
    }

    /// <summary>
    /// The hand-off alone: the same page written and passed to the worker, which drops it. What every other method
    /// pays before any pool is involved; a pool's own share of a page is its time less this one.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void ChannelOnly()
    {
        SetMode(4);
        nint p = _queuePages[0];
        SpscChannel ch = _toWorker;
        var spin = new SpinWait();
        for (int i = 0; i < Pages; i++)
        {
            *(long*)p = i;
            while (!ch.TryWrite(p))
                spin.SpinOnce(sleep1Threshold: -1);
            spin = default;
        }
        Drain();
    }

    /// <summary>PagePool: AllocPage on the consumer, PutPage on the worker (per-CPU cache, then the ring).</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void PagePool() => RunPagePool(mode: 1);

    /// <summary>
    /// PagePool with the worker returning what it has received in bursts of up to 32 through PutPages (as a
    /// driver's TX completion does with xdp_return_frame_bulk): one CAS per burst instead of one per page.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void PagePoolBulkPut() => RunPagePool(mode: 3);

    private void RunPagePool(int mode)
    {
        if (_consumer.ThreadId != Environment.CurrentManagedThreadId)
            _consumer = _pool.BindConsumer();
        SetMode(mode);
        PagePoolConsumer consumer = _consumer;
        SpscChannel ch = _toWorker;
        var spin = new SpinWait();
        for (int i = 0; i < Pages; i++)
        {
            NetMemRef page = consumer.AllocPage();
            *(long*)page.Address = i;
            while (!ch.TryWrite((nint)page.Descriptor))
                spin.SpinOnce(sleep1Threshold: -1);
            spin = default;
        }
        Drain();
    }
}
