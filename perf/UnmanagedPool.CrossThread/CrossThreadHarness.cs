using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UnmanagedPool.Native;
using UnmanagedPool.Perf;

namespace UnmanagedPool.CrossThread;

/// <summary>
/// One thread allocates, another puts back, with the shapes of <c>CrossThreadBenchmarks</c>: the constructing
/// thread (the pool's consumer) takes a page, writes it and hands it to a worker thread through the same
/// single-producer single-consumer channel (<see cref="SpscChannel"/>); the worker returns it in the method's way.
/// The worker lives as long as the harness and waits, blocked, between methods, so that the single-thread methods
/// run with the other CPU free. Consumer thread only, except the worker's own loop.
/// </summary>
internal sealed unsafe class CrossThreadHarness : IDisposable
{
    /// <summary>
    /// Names of the methods, in the order of <see cref="Mode"/> from <see cref="Mode.ChannelOnly"/>: the first
    /// <see cref="DefaultCount"/> run by default, the probes only when named (<c>--methods</c>).
    /// </summary>
    public static readonly string[] Methods =
        ["ChannelOnly", "ChannelDescriptor", "ConcurrentQueuePool", "PagePool", "PagePoolBulkPut8", "PagePoolBulkPut32", "PagePoolRedirect",
         "ProbeBulkPut32ReadHead", "ProbeBulkPut32WriteHead", "ProbeBulkPut32CasHead", "ProbeChannelDescriptorRead",
         "ProbeChannelDescriptorUntouched"];

    /// <summary>
    /// Methods run when <c>--methods</c> is not given. The probes after them are PagePoolBulkPut32 with the worker
    /// also touching the first cache line of each page (the line the consumer wrote, where a redirected frame keeps
    /// its descriptor) before the put: a plain read, a read and a plain write, a compare-exchange. Their differences
    /// to PagePoolBulkPut32 price the line's transfer to the worker and back, as PagePoolRedirect pays it. The last,
    /// ProbeChannelDescriptorRead, is ChannelDescriptor with a worker that only reads the descriptor word: the floor
    /// of a pool whose put would check a page without marking it; ProbeChannelDescriptorUntouched has a worker that
    /// drops the page without touching its descriptor: the floor of a pool whose put would not look at the page at
    /// all (no identity check, no double-put check).
    /// </summary>
    public const int DefaultCount = 7;

    /// <summary>Pages the ConcurrentQueue pool owns (as many as the PagePool's ring holds).</summary>
    private const int QueuePages = 4096;

    /// <summary>Pages put in the pool before the first round, more than can be in flight, so that no round grows it.</summary>
    private const int PrefillPages = 3072;

    /// <summary>Packet bytes of a redirected frame (a minimal frame; the size is never read on the return path).</summary>
    private const int RedirectLength = 64;

    /// <summary>Frames the worker returns at most in one <see cref="Xdp.ReturnFrameBulk"/>, as a TX completion.</summary>
    private const int RedirectBurst = 32;

    private enum Mode
    {
        Stop = -1,
        Idle = 0,
        ChannelOnly = 1,
        ChannelDescriptor,
        Queue,
        PagePool,
        BulkPut8,
        BulkPut32,
        Redirect,
        ProbeRead,
        ProbeWrite,
        ProbeCas,
        ProbeDescriptorRead,
        ProbeDescriptorUntouched,
    }

    private readonly PagePool _pool;
    private readonly PagePoolConsumer _consumer;
    private readonly XdpMemInfo _mem;
    private readonly ConcurrentQueue<nint> _queue = new();
    private readonly byte* _queueBlock;
    private readonly byte* _queueDescriptors;
    private readonly SpscChannel _toWorker = new(1024);
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _worker;
    private readonly int _workerCpu;

    // volatile: written by the consumer, polled by the worker, which must see a new mode without a fence of its own.
    private volatile int _mode = (int)Mode.Idle;

    // volatile: the worker's acknowledgement (the mode it has started, see SetMode); its write releases
    // _workerBytes and the pinning result, the consumer's read acquires them.
    private volatile int _workerMode = int.MinValue;

    private long _workerBytes; // the worker's allocated bytes when it acknowledged _workerMode

    private long _probeSink; // what the probes read, kept so that their reads are not removed

    private int _descriptorNext; // ChannelDescriptor's next page, consumer thread only

    /// <summary>What the last probe read, summed (kept so that its reads are not removed).</summary>
    public long ProbeSink => _probeSink;

    /// <summary>Why the worker was not pinned (null when pinned or not asked).</summary>
    public string? WorkerPinError { get; private set; }

    /// <summary>The worker's kernel thread id where pinning read it (0 otherwise).</summary>
    public int WorkerTid { get; private set; }

    /// <summary>
    /// Creates the pool, binds the calling thread as its consumer and starts the worker, pinned to
    /// <paramref name="workerCpu"/> when it is not negative.
    /// </summary>
    public CrossThreadHarness(int workerCpu)
    {
        _workerCpu = workerCpu;
        _pool = new PagePool(new PagePoolOptions { PoolSize = 4096, Name = "crossthread" });
        _consumer = _pool.BindConsumer();
        _mem = XdpMemInfo.ForPagePool(_pool);
        var prefill = new NetMemRef[PrefillPages];
        int got = _consumer.AllocPages(prefill);
        _pool.PutPages(prefill.AsSpan(0, got));

        _queueBlock = (byte*)NativeMemory.AlignedAlloc(QueuePages * (nuint)PageConstants.PageSize, (nuint)PageConstants.PageSize);
        _queueDescriptors = (byte*)NativeMemory.AlignedAlloc(QueuePages * (nuint)sizeof(NetMem), (nuint)sizeof(NetMem));
        NativeMemory.Clear(_queueDescriptors, QueuePages * (nuint)sizeof(NetMem));
        for (int i = 0; i < QueuePages; i++)
            _queue.Enqueue((nint)(_queueBlock + (nint)i * PageConstants.PageSize));

        _worker = new Thread(WorkerLoop) { IsBackground = true, Name = "cross-thread-putter" };
        _worker.Start();
        WaitForWorker(Mode.Idle);
    }

    /// <summary>
    /// Runs method <paramref name="method"/> (an index into <see cref="Methods"/>) over <paramref name="pages"/>
    /// pages: returns the elapsed <see cref="System.Diagnostics.Stopwatch"/> ticks from the first page taken to the
    /// last page returned, and the bytes of managed memory each thread allocated meanwhile.
    /// </summary>
    public (long Ticks, long ConsumerBytes, long WorkerBytes) Run(int method, int pages)
    {
        var mode = (Mode)(method + 1);
        SetMode(mode);
        // Volatile (acquire): written by the worker before the acknowledgement SetMode waited for.
        long workerStart = Volatile.Read(ref _workerBytes);
        long consumerStart = GC.GetAllocatedBytesForCurrentThread();
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        switch (mode)
        {
            case Mode.ChannelOnly:
                ChannelOnly(pages);
                break;
            case Mode.ChannelDescriptor:
            case Mode.ProbeDescriptorRead:
            case Mode.ProbeDescriptorUntouched:
                ChannelDescriptor(pages);
                break;
            case Mode.Queue:
                ConcurrentQueuePool(pages);
                break;
            case Mode.Redirect:
                Redirect(pages);
                break;
            default:
                PagePoolAlloc(pages);
                break;
        }
        Drain();
        SetMode(Mode.Idle);   // the worker acknowledges once it has returned everything, bursts included
        long t1 = System.Diagnostics.Stopwatch.GetTimestamp();
        long consumerBytes = GC.GetAllocatedBytesForCurrentThread() - consumerStart;
        long workerBytes = Volatile.Read(ref _workerBytes) - workerStart; // Volatile: as above
        return (t1 - t0, consumerBytes, workerBytes);
    }

    /// <summary>The hand-off alone: one page written and passed to the worker, which drops it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ChannelOnly(int pages)
    {
        nint p = (nint)_queueBlock;
        SpscChannel ch = _toWorker;
        var spin = new SpinWait();
        for (int i = 0; i < pages; i++)
        {
            *(long*)p = i;
            while (!ch.TryWrite(p))
                spin.SpinOnce(sleep1Threshold: -1);
            spin = default;
        }
    }

    /// <summary>
    /// The hand-off plus what any pool that checks and marks the pages put back must move, with no pool: the consumer
    /// takes the next of the ConcurrentQueue pool's 4096 pages in turn (as many as cycle through the PagePool),
    /// writes it, writes the <c>pp_ref_count</c> word of its 64-byte descriptor (the hand-out) and hands it over; the
    /// worker reads that word and writes it back to 0 (the put's check and mark). Each page's descriptor line goes to
    /// the worker and back, one page at a time, and each page's first line is as cold as in the pool methods. Not a
    /// hard floor (the pool's refill takes 64 descriptor lines for writing in one pass, which this does not), but
    /// the traffic a checking pool cannot avoid, with none of a pool's own work: a pool method near 1 x this is
    /// spending its time on that traffic.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ChannelDescriptor(int pages)
    {
        SpscChannel ch = _toWorker;
        byte* block = _queueBlock;
        byte* descriptors = _queueDescriptors;
        int next = _descriptorNext;
        var spin = new SpinWait();
        for (int i = 0; i < pages; i++)
        {
            byte* p = block + (nint)next * PageConstants.PageSize;
            *(long*)p = i;
            ((NetMem*)descriptors + next)->PpRefCount = 1;
            next = (next + 1) & (QueuePages - 1);
            while (!ch.TryWrite((nint)p))
                spin.SpinOnce(sleep1Threshold: -1);
            spin = default;
        }
        _descriptorNext = next;
    }

    /// <summary>
    /// The ConcurrentQueue pool: dequeue a page, write it and one word of its 64-byte descriptor (a table beside the
    /// pages, as the pool's), hand it over; the worker writes the descriptor word again and enqueues the page.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ConcurrentQueuePool(int pages)
    {
        ConcurrentQueue<nint> q = _queue;
        SpscChannel ch = _toWorker;
        byte* block = _queueBlock;
        byte* descriptors = _queueDescriptors;
        var spin = new SpinWait();
        for (int i = 0; i < pages; i++)
        {
            nint p;
            while (!q.TryDequeue(out p))
                spin.SpinOnce(sleep1Threshold: -1);
            *(long*)p = i;
            *(long*)QueueDescriptor(descriptors, block, p) = 1;
            while (!ch.TryWrite(p))
                spin.SpinOnce(sleep1Threshold: -1);
            spin = default;
        }
    }

    /// <summary>AllocPage on the consumer handle, one write to the page, hand-off.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PagePoolAlloc(int pages)
    {
        PagePoolConsumer consumer = _consumer;
        SpscChannel ch = _toWorker;
        var spin = new SpinWait();
        for (int i = 0; i < pages; i++)
        {
            NetMemRef page = consumer.AllocPage();
            *(long*)page.Address = i;
            while (!ch.TryWrite((nint)page.Descriptor))
                spin.SpinOnce(sleep1Threshold: -1);
            spin = default;
        }
    }

    /// <summary>
    /// The packet processor's redirect: AllocPage, an <see cref="XdpBuff"/> over the page with the XDP headroom,
    /// converted to an <see cref="XdpFrame"/> (its descriptor written into the headroom: the one write to the page),
    /// the frame handed over.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Redirect(int pages)
    {
        PagePoolConsumer consumer = _consumer;
        SpscChannel ch = _toWorker;
        XdpMemInfo mem = _mem;
        var spin = new SpinWait();
        for (int i = 0; i < pages; i++)
        {
            NetMemRef page = consumer.AllocPage();
            XdpBuff buff;
            buff.DataHardStart = page.Address;
            buff.Data = page.Address + Xdp.PacketHeadroom;
            buff.DataEnd = buff.Data + RedirectLength;
            buff.DataMeta = buff.Data + 1;
            buff.FrameSize = PageConstants.PageSize;
            buff.Mem = mem;
            buff.Flags = XdpBuffFlags.None;
            XdpFrame frame = buff.ToFrame();
            // The channel carries pointer-sized items; an XdpFrame is a pointer-sized handle (its descriptor's address).
            while (!ch.TryWrite(Unsafe.BitCast<XdpFrame, nint>(frame)))
                spin.SpinOnce(sleep1Threshold: -1);
            spin = default;
        }
    }

    /// <summary>The descriptor of a page of the ConcurrentQueue pool's block, in the table beside it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static NetMem* QueueDescriptor(byte* descriptors, byte* block, nint page) =>
        (NetMem*)descriptors + (((byte*)page - block) >> PageConstants.PageShift);

    /// <summary>Publishes what the consumer has written and waits until the worker has taken it all.</summary>
    private void Drain()
    {
        _toWorker.Flush();
        var spin = new SpinWait();
        while (!_toWorker.IsEmpty)
            spin.SpinOnce(sleep1Threshold: -1);
    }

    /// <summary>
    /// Switches the worker to <paramref name="mode"/> and waits until it has acknowledged it. The worker leaves a
    /// mode only with the channel empty and its last burst returned, so after the acknowledgement of
    /// <see cref="Mode.Idle"/> every page of the method is back, and <see cref="_workerBytes"/> holds its count.
    /// </summary>
    private void SetMode(Mode mode)
    {
        _mode = (int)mode;
        if (mode != Mode.Idle)
            _wake.Release();
        WaitForWorker(mode);
    }

    private void WaitForWorker(Mode mode)
    {
        var spin = new SpinWait();
        while (_workerMode != (int)mode)
            spin.SpinOnce(sleep1Threshold: -1);
    }

    private void WorkerLoop()
    {
        if (_workerCpu >= 0)
        {
            WorkerPinError = ThreadAffinity.TryPinCurrentThread(_workerCpu, out int tid);
            WorkerTid = tid;
        }
        var burst = new NetMemRef[RedirectBurst];
        var frames = new XdpFrame[RedirectBurst];
        while (true)
        {
            int mode = _mode;
            // Volatile (release): the count is read by the consumer after it sees the acknowledgement below.
            Volatile.Write(ref _workerBytes, GC.GetAllocatedBytesForCurrentThread());
            _workerMode = mode;
            switch ((Mode)mode)
            {
                case Mode.Stop:
                    return;
                case Mode.Idle:
                    _wake.Wait();
                    break;
                case Mode.ChannelOnly:
                case Mode.ChannelDescriptor:
                case Mode.ProbeDescriptorRead:
                case Mode.ProbeDescriptorUntouched:
                case Mode.Queue:
                case Mode.PagePool:
                    PutEach((Mode)mode);
                    break;
                case Mode.BulkPut8:
                    PutBursts(burst.AsSpan(0, 8), mode);
                    break;
                case Mode.BulkPut32:
                    PutBursts(burst.AsSpan(0, 32), mode);
                    break;
                case Mode.Redirect:
                    ReturnFrames(frames, mode);
                    break;
                case Mode.ProbeRead:
                case Mode.ProbeWrite:
                case Mode.ProbeCas:
                    PutBurstsTouchingHeads(burst, mode);
                    break;
            }
        }
    }

    /// <summary>Worker: returns each page as it comes (or drops it, for the channel alone) until the mode changes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PutEach(Mode mode)
    {
        SpscChannel ch = _toWorker;
        PagePool pool = _pool;
        ConcurrentQueue<nint> q = _queue;
        byte* block = _queueBlock;
        byte* descriptors = _queueDescriptors;
        var spin = new SpinWait();
        while (true)
        {
            if (ch.TryRead(out nint item))
            {
                if (mode == Mode.PagePool)
                {
                    pool.PutPage(new NetMemRef((NetMem*)item));
                }
                else if (mode is Mode.ChannelDescriptor or Mode.ProbeDescriptorRead)
                {
                    // The put's check; ChannelDescriptor also marks the page returned, the probe only reads.
                    NetMem* d = QueueDescriptor(descriptors, block, item);
                    if (d->PpRefCount != 1)
                        throw new InvalidOperationException($"{Methods[(int)mode - 1]}: a page came back twice");
                    if (mode == Mode.ChannelDescriptor)
                        d->PpRefCount = 0;
                }
                else if (mode == Mode.Queue)
                {
                    *(long*)QueueDescriptor(descriptors, block, item) = 0;
                    q.Enqueue(item);
                }
                spin = default;
            }
            else if (_mode != (int)mode)
            {
                return;
            }
            else
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }

    /// <summary>Worker: returns what it has received in bursts of up to <c>burst.Length</c> pages through PutPages.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PutBursts(Span<NetMemRef> burst, int mode)
    {
        SpscChannel ch = _toWorker;
        PagePool pool = _pool;
        var spin = new SpinWait();
        while (true)
        {
            int n = 0;
            while (n < burst.Length && ch.TryRead(out nint item))
                burst[n++] = new NetMemRef((NetMem*)item);
            if (n > 0)
            {
                pool.PutPages(burst[..n]);
                spin = default;
            }
            else if (_mode != mode)
            {
                return;
            }
            else
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }

    /// <summary>
    /// Worker, for the probes: <see cref="PutBursts"/> with bursts of 32, touching the first word of each page of the
    /// burst first (all of the burst before its put, as <see cref="Xdp.ReturnFrameBulk"/> claims every frame first).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PutBurstsTouchingHeads(NetMemRef[] burst, int mode)
    {
        SpscChannel ch = _toWorker;
        PagePool pool = _pool;
        var spin = new SpinWait();
        long sum = 0;
        while (true)
        {
            int n = 0;
            while (n < burst.Length && ch.TryRead(out nint item))
                burst[n++] = new NetMemRef((NetMem*)item);
            if (n > 0)
            {
                for (int i = 0; i < n; i++)
                {
                    long* head = (long*)burst[i].Address;
                    if (mode == (int)Mode.ProbeRead)
                    {
                        sum += *head;
                    }
                    else if (mode == (int)Mode.ProbeWrite)
                    {
                        long v = *head;
                        *head = v + 1;
                    }
                    else
                    {
                        long v = *head;
                        // Interlocked: the probe prices the locked compare-exchange a frame claim does.
                        sum += Interlocked.CompareExchange(ref *head, v + 1, v);
                    }
                }
                pool.PutPages(burst.AsSpan(0, n));
                spin = default;
            }
            else if (_mode != mode)
            {
                _probeSink = sum;
                return;
            }
            else
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }

    /// <summary>Worker: returns what it has received in bursts of up to 32 frames through Xdp.ReturnFrameBulk.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ReturnFrames(XdpFrame[] frames, int mode)
    {
        SpscChannel ch = _toWorker;
        var spin = new SpinWait();
        while (true)
        {
            int n = 0;
            while (n < frames.Length && ch.TryRead(out nint item))
                frames[n++] = Unsafe.BitCast<nint, XdpFrame>(item);   // the handle is the frame's address
            if (n > 0)
            {
                Xdp.ReturnFrameBulk(frames.AsSpan(0, n));
                spin = default;
            }
            else if (_mode != mode)
            {
                return;
            }
            else
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }

    /// <summary>Stops the worker, disposes the pool (on the consumer thread) and frees the queue's pages.</summary>
    public void Dispose()
    {
        _mode = (int)Mode.Stop;
        _wake.Release();
        _worker.Join();
        _pool.Dispose();
        _wake.Dispose();
        while (_queue.TryDequeue(out _))
        {
        }
        NativeMemory.AlignedFree(_queueBlock);
        NativeMemory.AlignedFree(_queueDescriptors);
    }
}
