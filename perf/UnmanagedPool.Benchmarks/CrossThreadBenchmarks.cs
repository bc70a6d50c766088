using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// One thread allocates, another puts back: the benchmark thread takes pages and hands each to a worker thread
/// through a single-producer single-consumer channel, published in batches of 16 as a NAPI poll hands work on;
/// the worker returns them to the pool. Time per page is the inverse of pages per second; the channel is the
/// same for both pools, so the ratio compares the pools. A side that waits spins and starts its backoff again after
/// each item it moves, so a run measures the two threads working, not one of them parked in a yield.
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

    /// <summary>
    /// A bounded single-producer single-consumer ring used only to hand pages to the worker, built so that its own
    /// cost stays small and the same whichever pool runs on either side of it:
    /// <list type="bullet">
    /// <item>capacity a power of two, so a slot is found with a mask, not a division;</item>
    /// <item>each side publishes its index in batches (<see cref="PublishEvery"/>) on a cache line of its own, and
    /// keeps its working state on another, so the other side's polling pulls one line every batch, not every item;</item>
    /// <item>a full channel takes writes again only once <see cref="ResumeRoom"/> slots are free, so the writer never
    /// writes into the lines the reader is reading.</item>
    /// </list>
    /// </summary>
    private sealed class SpscChannel
    {
        /// <summary>Items a side moves before it publishes its index: a NAPI-like batch (arbitrary).</summary>
        private const int PublishEvery = 16;

        /// <summary>Free slots a full channel waits for before it takes writes again (a quarter of 1024).</summary>
        private const int ResumeRoom = 256;

        private readonly nint[] _items;
        private readonly long _mask;
        private readonly Side _writer = new();
        private readonly Side _reader = new();

        public SpscChannel(int capacity)
        {
            if (capacity < 2 * ResumeRoom || (capacity & (capacity - 1)) != 0)
                throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"A power of two of at least {2 * ResumeRoom}.");
            _items = new nint[capacity];
            _mask = capacity - 1;
        }

        /// <summary>Whether the reader has taken everything the writer published (both indexes as published).</summary>
        public bool IsEmpty => Volatile.Read(ref _reader.Published) == Volatile.Read(ref _writer.Published);

        /// <summary>Writer only: appends <paramref name="item"/>; false when the channel is full.</summary>
        public bool TryWrite(nint item)
        {
            long tail = _writer.Next;
            if (tail - _writer.OtherSeen >= _items.Length)
            {
                // Volatile (acquire): the reader publishes its index after it has read the slots below it.
                _writer.OtherSeen = Volatile.Read(ref _reader.Published);
                if (tail - _writer.OtherSeen > _items.Length - ResumeRoom)
                {
                    Flush();
                    return false;
                }
            }
            _items[tail & _mask] = item;
            _writer.Next = tail + 1;
            if (tail + 1 - _writer.Published >= PublishEvery)
                Flush();
            return true;
        }

        /// <summary>Writer only: publishes what it has written.</summary>
        public void Flush() =>
            // Volatile (release): the slot writes happen before the reader sees the new index.
            Volatile.Write(ref _writer.Published, _writer.Next);

        /// <summary>Reader only: takes the oldest item; false when there is none published.</summary>
        public bool TryRead(out nint item)
        {
            long head = _reader.Next;
            if (head == _reader.OtherSeen)
            {
                // Out of items: publish what has been read, so that a waiting writer (and Drain) sees it.
                if (_reader.Published != head)
                    // Volatile (release): the slots have been read before the writer may reuse them.
                    Volatile.Write(ref _reader.Published, head);
                // Volatile (acquire): pairs with the writer's release.
                _reader.OtherSeen = Volatile.Read(ref _writer.Published);
                if (head == _reader.OtherSeen)
                {
                    item = 0;
                    return false;
                }
            }
            item = _items[head & _mask];
            _reader.Next = head + 1;
            if (head + 1 - _reader.Published >= PublishEvery)
                // Volatile (release): as above.
                Volatile.Write(ref _reader.Published, head + 1);
            return true;
        }

        /// <summary>
        /// One side's state. <see cref="Published"/>, which the other side polls, has a cache line to itself; the
        /// side's working state is on the next one, so writing it never disturbs the other side.
        /// </summary>
        private sealed class Side
        {
#pragma warning disable CS0169 // padding
            private long _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7;
#pragma warning restore CS0169
            public long Published;
#pragma warning disable CS0169
            private long _m0, _m1, _m2, _m3, _m4, _m5, _m6, _m7;
#pragma warning restore CS0169
            public long Next;
            public long OtherSeen;
#pragma warning disable CS0169
            private long _q0, _q1, _q2, _q3, _q4, _q5, _q6, _q7;
#pragma warning restore CS0169
        }
    }
}
