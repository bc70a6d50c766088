using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// One thread allocates, another puts back: the benchmark thread takes pages and hands each to a worker thread
/// through a single-producer single-consumer channel; the worker returns them to the pool. Time per page is the
/// inverse of pages per second; the channel is the same for both pools, so the ratio compares the pools.
/// </summary>
[MemoryDiagnoser]
public unsafe class CrossThreadBenchmarks
{
    private const int Pages = 1 << 16;

    private PagePool _pool = null!;
    private PagePoolConsumer _consumer = null!;
    private ConcurrentQueue<nint> _queue = null!;
    private nint[] _queuePages = null!;
    private SpscChannel _toWorker = null!;
    private Thread _worker = null!;
    private volatile int _mode;     // 0 idle, 1 pagepool, 2 queue, -1 stop

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
        while (true)
        {
            int mode = _mode;
            if (mode < 0)
                return;
            if (_toWorker.TryRead(out nint item))
            {
                if (mode == 1)
                    _pool.PutPage(new NetMemRef((NetMem*)item));
                else
                    _queue.Enqueue(item);
                spin = default;
            }
            else
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }

    private void Drain()
    {
        var spin = new SpinWait();
        while (!_toWorker.IsEmpty)
            spin.SpinOnce(sleep1Threshold: -1);
    }

    /// <summary>The ConcurrentQueue pool: dequeue here, enqueue on the worker.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public void ConcurrentQueuePool()
    {
        _mode = 2;
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
        }
        Drain();
    }

    /// <summary>PagePool: AllocPage on the consumer, PutPage on the worker (per-CPU cache, then the ring).</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void PagePool()
    {
        if (_consumer.ThreadId != Environment.CurrentManagedThreadId)
            _consumer = _pool.BindConsumer();
        _mode = 1;
        PagePoolConsumer consumer = _consumer;
        SpscChannel ch = _toWorker;
        var spin = new SpinWait();
        for (int i = 0; i < Pages; i++)
        {
            NetMemRef page = consumer.AllocPage();
            *(long*)page.Address = i;
            while (!ch.TryWrite((nint)page.Descriptor))
                spin.SpinOnce(sleep1Threshold: -1);
        }
        Drain();
    }

    /// <summary>A bounded single-producer single-consumer ring used only to hand pages to the worker.</summary>
    private sealed class SpscChannel(int capacity)
    {
        private readonly nint[] _items = new nint[capacity];
        private long _head;     // written by the reader (same object as _tail: some false sharing, equal for both pools)
        private long _tail;     // written by the writer

        public bool IsEmpty => Volatile.Read(ref _head) == Volatile.Read(ref _tail);

        public bool TryWrite(nint item)
        {
            // Volatile: the reader publishes _head after consuming a slot; the writer publishes _tail after filling one.
            long tail = _tail;
            if (tail - Volatile.Read(ref _head) >= _items.Length)
                return false;
            _items[tail % _items.Length] = item;
            Volatile.Write(ref _tail, tail + 1);
            return true;
        }

        public bool TryRead(out nint item)
        {
            long head = _head;
            if (head == Volatile.Read(ref _tail))
            {
                item = 0;
                return false;
            }
            item = _items[head % _items.Length];
            Volatile.Write(ref _head, head + 1);
            return true;
        }
    }
}
