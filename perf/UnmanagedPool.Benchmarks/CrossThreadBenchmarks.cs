using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// One thread allocates, another puts back: the benchmark thread takes pages and hands each to a worker thread
/// through a single-producer single-consumer channel, published in batches of 16 as a NAPI poll hands work on;
/// the worker returns them to the pool. Time per page is the inverse of pages per second; the channel is the
/// same for both pools, so the ratio compares the pools.
/// </summary>
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
        var burst = new NetMemRef[32];
        while (true)
        {
            int mode = _mode;
            if (mode < 0)
                return;
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

    /// <summary>
    /// The hand-off alone: the same page written and passed to the worker, which drops it. What every other method
    /// pays before any pool is involved; a pool's own share of a page is its time less this one.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void ChannelOnly()
    {
        _mode = 4;
        nint p = _queuePages[0];
        SpscChannel ch = _toWorker;
        var spin = new SpinWait();
        for (int i = 0; i < Pages; i++)
        {
            *(long*)p = i;
            while (!ch.TryWrite(p))
                spin.SpinOnce(sleep1Threshold: -1);
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
        _mode = mode;
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

    /// <summary>
    /// A bounded single-producer single-consumer ring used only to hand pages to the worker. Each side keeps its
    /// index on its own object (its own cache lines) and a cached copy of the other side's index, so a transfer
    /// touches the other side's line only when the cached copy runs out.
    /// </summary>
    private sealed class SpscChannel(int capacity)
    {
        private readonly nint[] _items = new nint[capacity];
        private readonly Side _writer = new();
        private readonly Side _reader = new();

        public bool IsEmpty => Volatile.Read(ref _reader.Index) == Volatile.Read(ref _writer.Index);

        /// <summary>Items written before the writer publishes its index: a NAPI-like batch (arbitrary).</summary>
        private const int PublishEvery = 16;

        public bool TryWrite(nint item)
        {
            long tail = _writer.Pending;
            if (tail - _writer.OtherCached >= _items.Length)
            {
                // Volatile (acquire): the reader publishes its index after it has read the slot.
                _writer.OtherCached = Volatile.Read(ref _reader.Index);
                if (tail - _writer.OtherCached >= _items.Length)
                {
                    Flush();
                    return false;
                }
            }
            _items[tail % _items.Length] = item;
            _writer.Pending = tail + 1;
            if (tail + 1 - _writer.Index >= PublishEvery)
                Flush();
            return true;
        }

        /// <summary>Publishes what the writer has written.</summary>
        public void Flush() =>
            // Volatile (release): the slot writes happen before the reader sees the new index.
            Volatile.Write(ref _writer.Index, _writer.Pending);

        public bool TryRead(out nint item)
        {
            long head = _reader.Index;
            if (head == _reader.OtherCached)
            {
                // Volatile (acquire): pairs with the writer's release.
                _reader.OtherCached = Volatile.Read(ref _writer.Index);
                if (head == _reader.OtherCached)
                {
                    item = 0;
                    return false;
                }
            }
            item = _items[head % _items.Length];
            // Volatile (release): the slot has been read before the writer may reuse it.
            Volatile.Write(ref _reader.Index, head + 1);
            return true;
        }

        /// <summary>One side's state, padded so the two sides never share a cache line.</summary>
        private sealed class Side
        {
#pragma warning disable CS0169 // padding
            private long _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7;
#pragma warning restore CS0169
            public long Index;
            public long OtherCached;
            public long Pending;
#pragma warning disable CS0169
            private long _q0, _q1, _q2, _q3, _q4, _q5, _q6, _q7;
#pragma warning restore CS0169
        }
    }
}
