using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using PacketProcessor.Drivers;
using PacketProcessor.Frames;
using PacketProcessor.Programs;
using UnmanagedPool;
using UnmanagedPool.Native;

namespace PacketProcessor.Engine;

/// <summary>
/// One RX queue in the manner of a NAPI driver: a descriptor ring of posted buffers refilled in bulk, a poll
/// loop running the program on up to a budget of frames, a TX ring flushed at the end of each poll, and an inbox
/// of frames other queues redirect here. Generic over its buffer source and program so that the per-frame work
/// is inlined.
/// </summary>
internal sealed class RxQueue<TOps, TProgram> : QueueBase
    where TOps : struct, IBufferOps
    where TProgram : struct, IXdpProgram
{
    private TOps _ops = default;
    private TProgram _program;
    private readonly RxBuf[] _ring;
    private readonly int _mask;
    private int _head;      // next descriptor the NIC completes
    private int _posted;    // descriptors posted from _head on
    private readonly RxBuf[] _tx = new RxBuf[RefillBatch];
    private int _txCount;
    private readonly RedirectItem[] _redirectBatch = new RedirectItem[RefillBatch];
    private readonly RxBuf[] _redirectTx = new RxBuf[RefillBatch];
    private XdpContext _ctx;
    private QueueBase[] _queues = [];
    private RxBuf[]? _stage;        // multi-buffer: the descriptors of one poll, copied across the ring's wrap
    private XdpMemInfo _mem;        // multi-buffer: the pool, as the XdpBuffs name it (the kernel's rxq->mem)
    private int _maxFrame;          // multi-buffer: Mtu + 18
    private bool _nicReorders;      // multi-buffer: the NIC may reorder the posted buffers

    public RxQueue(int index, int queueCount, int ringSize, NicQueue nic, TProgram program) : base(index, queueCount, nic)
    {
        if (ringSize < RefillBatch || (ringSize & (ringSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(ringSize), ringSize, $"The ring is a power of two, at least {RefillBatch}.");
        _ring = new RxBuf[ringSize];
        RingSize = ringSize;
        _mask = ringSize - 1;
        _program = program;
        _ctx = new XdpContext { IngressQueue = index, QueueCount = queueCount };
    }

    public override long Matched => _program.Matched;

    /// <summary>Test hook: attaches the buffers on the calling thread and posts the ring.</summary>
    internal void Start(QueueBase[] queues)
    {
        _queues = queues;
        _ops.Attach(this);
        if (Pool is { } warm)
            TouchPoolThreadState(warm);
        if (Mtu > 0)
        {
            if (Pool is not { } pool)
                throw new InvalidOperationException("Multi-buffer receive needs page-pool buffers.");
            _mem = XdpMemInfo.ForPagePool(pool);
            _maxFrame = Mtu + FrameBuilder.MtuOverhead;
            _stage = new RxBuf[RefillBatch];
            _nicReorders = Nic.ReordersPosted;
            if (_ops.BufferSize - RxBuf.Headroom - XdpBuff.SharedInfoSize < SyntheticNic.HeaderBytes)
                throw new InvalidOperationException($"A {_ops.BufferSize}-byte buffer has no room for a multi-buffer head.");
        }
        RefillRing();
    }

    // Fully optimized from the first call: the loop runs for the whole measured window, and neither an on-stack
    // replacement nor a tier-up of this frame may happen (and allocate) inside it.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run(QueueBase[] queues, Func<bool> stop, Barrier phases, CountdownEvent ready)
    {
        Start(queues);
        Nic.Prepare();
        ready.Signal();
        Gate?.Wait();
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        NicQueue nic = Nic;
        bool waits = nic.WaitsWhenIdle;
        long busyPollTicks = BusyPollMicroseconds * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
        long idleSince = 0;
        while (!stop())
        {
            // Transmit what other queues redirected here first (TX before RX, as a NAPI poll cleans its TX ring
            // first): an inbox that drains slower than it fills pauses its senders.
            int work = DrainInboxes(RedirectInbox / 2);
            work += Poll();
            if (work != 0)
                idleSince = 0;
            else
            {
                if (waits)
                {
                    // Busy polling: an empty poll starts the clock, and only a ring empty for the whole budget
                    // sleeps (each sleep costs the delivering CPU a wake-up).
                    long now = busyPollTicks > 0 ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                    if (idleSince == 0)
                        idleSince = now;
                    if (now - idleSince >= busyPollTicks)
                    {
                        nic.WaitForTraffic(10);
                        idleSince = 0;
                    }
                }
                else
                    // Paused behind a thread that has to run first (the worker, another queue): let it have this
                    // CPU if it waits for one. (Measured: a short spin instead halves the 2-queue redirect rate; the
                    // yield also keeps this thread off the indexes the other thread is writing.)
                    Thread.Yield();
            }
        }
        AllocatedBytes = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        // Phase 1: no queue receives any more, every redirect is published.
        phases.SignalAndWait();
        // Phase 2: every inbox is empty, so every redirected frame is back in its pool.
        while (DrainInboxes(int.MaxValue) > 0)
        {
        }
        phases.SignalAndWait();
        // Phase 3: the worker has freed every passed packet.
        phases.SignalAndWait();
        Stop();
    }

    /// <summary>Test hook: gives every posted buffer back and releases the pool.</summary>
    internal void Stop()
    {
        while (_posted > 0)
        {
            _ops.Recycle(ref _ring[_head]);
            _ring[_head] = default;
            _head = (_head + 1) & _mask;
            _posted--;
        }
        _ops.Detach();
        if (Pool is { } pool)
        {
            FinalPoolStats = pool.GetStats();
            PoolFreed = pool.IsFreed;
        }
        else
        {
            PoolFreed = InFlight == 0;
        }
    }

    /// <summary>One NAPI poll: up to the budget of frames through the program, then TX and redirect flushes and the refill.</summary>
    internal int Poll()
    {
        if (_stage != null)
            return PollMultiBuffer();
        if (!DownstreamHasRoom())
        {
            // Flow control (a NIC's pause frames): the stack's backlog or a redirect target's inbox cannot take a
            // whole budget, so leave the frames at the "wire" rather than drop them after receiving.
            Counters.RxPaused++;
            return 0;
        }
        int n = Math.Min(Math.Min(RefillBatch, _posted), _ring.Length - _head);
        if (n == 0)
        {
            Counters.RxNoBuffers++;
            RefillRing();
            return 0;
        }
        int capacity = _ops.BufferSize - RxBuf.Headroom;
        int done = Nic.Receive(_ring.AsSpan(_head, n), capacity);
        ref RxBuf first = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_ring), _head);
        long bytes = 0;
        QueueCounters c = Counters;
        // Counted as received before the program sees them (a NIC counts at DMA completion): every drop, abort or
        // error counted below comes after its frame's rx, so a progress sample that reads the drops before rx never
        // shows more drops than frames received.
        c.RxPackets += done;
        for (int i = 0; i < done; i++)
        {
            ref RxBuf b = ref Unsafe.Add(ref first, i);
            if (b.Len < 0)
            {
                // Truncated by the driver: longer than the buffer.
                c.Aborted++;
                _ops.Recycle(ref b);
                continue;
            }
            bytes += b.Len;
            _ops.SyncForCpu(ref b);
            Verdict verdict = _program.Run(b.Frame, ref _ctx);
            switch (verdict)
            {
                case Verdict.Drop:
                    c.Drop++;
                    _ops.Recycle(ref b);
                    break;
                case Verdict.Tx:
                    if (_txCount == _tx.Length)
                        FlushTx();
                    _tx[_txCount++] = b;
                    break;
                case Verdict.Redirect:
                    Redirect(ref b);
                    break;
                case Verdict.Pass:
                    if (_ops.TryPass(ref b))
                    {
                        c.Pass++;
                    }
                    else
                    {
                        c.PassBacklogDrops++;
                        _ops.Recycle(ref b);
                    }
                    break;
                default:
                    c.Aborted++;
                    _ops.Recycle(ref b);
                    break;
            }
        }
        EndPoll(done, bytes);
        return done;
    }

    /// <summary>
    /// One NAPI poll of a queue with an MTU: the NIC completes frames over one or more descriptors, each frame
    /// runs as an <see cref="XdpBuff"/> (head plus the following descriptors as fragments, as mvneta_swbm_rx_frame
    /// and mvneta_swbm_add_rx_fragment build it), and every verdict gives back or hands on the head and every
    /// fragment: XDP_DROP back to the pool directly, XDP_TX and XDP_REDIRECT as an <see cref="XdpFrame"/>
    /// carrying the fragments, XDP_PASS as a <see cref="Packet"/> built from the buffer.
    /// </summary>
    private unsafe int PollMultiBuffer()
    {
        if (!DownstreamHasRoom())
        {
            Counters.RxPaused++;
            return 0;
        }
        int n = Math.Min(RefillBatch, _posted);
        RxBuf[] stage = _stage!;
        for (int k = 0; k < n; k++)
            stage[k] = _ring[(_head + k) & _mask];
        int bufferSize = _ops.BufferSize;
        int capacity = bufferSize - RxBuf.Headroom;
        int done = n == 0 ? 0 : Nic.ReceiveMultiBuffer(stage.AsSpan(0, n), capacity, capacity - XdpBuff.SharedInfoSize, _maxFrame);
        if (_nicReorders)
        {
            // The buffers the NIC did not use stay posted, now after the completed ones.
            for (int k = done; k < n; k++)
                _ring[(_head + k) & _mask] = stage[k];
        }
        if (done == 0)
        {
            // Too few posted for the next frame: refill whatever is free, even short of a batch (a ring of one
            // batch would otherwise never refill around the descriptors a frame needs).
            Counters.RxNoBuffers++;
            RefillRing(minimum: 1);
            return 0;
        }
        QueueCounters c = Counters;
        int frames = 0;
        for (int i = 0; i < done; i += stage[i].Segs)
            frames++;
        c.RxPackets += frames;
        long bytes = 0;
        int at = 0;
        while (at < done)
        {
            ref RxBuf b = ref stage[at];
            int segs = b.Segs;
            at += segs;
            if (b.Len < 0)
            {
                // Longer than the MTU allows (a NIC's length error).
                c.Aborted++;
                _ops.Recycle(ref b);
                continue;
            }
            XdpBuff xdp = default;
            xdp.Init(bufferSize, _mem);
            xdp.Prepare(b.Ptr, RxBuf.Headroom, b.Len, metaValid: false);
            _ops.SyncForCpu(ref b);
            for (int k = 1; k < segs; k++)
            {
                ref RxBuf f = ref Unsafe.Add(ref b, k);
                _ops.SyncForCpu(ref f);
                var page = new NetMemRef(f.Page);
                xdp.AddFrag(page, (int)(f.Ptr - page.Address) + RxBuf.Headroom, f.Len, bufferSize);
            }
            int len = xdp.GetBuffLength();
            bytes += len;
            _ctx.FrameLength = len;
            Verdict verdict = _program.Run(xdp.AsSpan(), ref _ctx);
            switch (verdict)
            {
                case Verdict.Drop:
                    c.Drop++;
                    RecycleSegs(ref b, segs);
                    break;
                case Verdict.Tx:
                {
                    // mvneta_xdp_xmit_back: the buffer becomes a frame; completion returns it (rx_napi).
                    XdpFrame frame = xdp.ToFrame();
                    if (frame.IsNull)
                    {
                        c.TxErrors++;
                        Xdp.ReturnBuff(xdp);
                        break;
                    }
                    if (_txCount == _tx.Length)
                        FlushTx();
                    _tx[_txCount++] = new RxBuf { Ptr = b.Ptr, Page = b.Page, Len = len, Origin = b.Origin, Segs = segs, TxFrame = frame };
                    break;
                }
                case Verdict.Redirect:
                {
                    int target = _ctx.RedirectQueue;
                    XdpFrame frame = (uint)target < (uint)_queues.Length ? xdp.ToFrame() : XdpFrame.Null;
                    if (!frame.IsNull && _queues[target].Inboxes[Index].TryWrite(new RedirectItem { Frame = frame, Len = len, Origin = b.Origin }))
                    {
                        c.Redirect++;
                        break;
                    }
                    c.RedirectErrors++;
                    if (frame.IsNull)
                        Xdp.ReturnBuff(xdp);
                    else
                        Xdp.ReturnFrameRxNapi(frame);
                    break;
                }
                case Verdict.Pass:
                    if (_ops.TryPass(in xdp))
                    {
                        c.Pass++;
                    }
                    else
                    {
                        c.PassBacklogDrops++;
                        RecycleSegs(ref b, segs);
                    }
                    break;
                default:
                    c.Aborted++;
                    RecycleSegs(ref b, segs);
                    break;
            }
        }
        EndPoll(done, bytes);
        return frames;
    }

    /// <summary>
    /// The end of a poll that consumed <paramref name="done"/> descriptors: the ring moves on, the batched TX goes out,
    /// this poll's redirects and passes become visible to their threads in one step each (xdp_do_flush), and the
    /// ring is refilled.
    /// </summary>
    private void EndPoll(int done, long bytes)
    {
        QueueCounters c = Counters;
        _head = (_head + done) & _mask;
        _posted -= done;
        c.RxBytes += bytes;
        if (_txCount > 0)
            FlushTx();
        foreach (QueueBase q in _queues)
            q.Inboxes[Index].Publish();
        PassRing.Publish();
        RefillRing();
    }

    /// <summary>
    /// XDP_DROP of a multi-buffer frame (mvneta_xdp_put_buff): the head's and every fragment's buffer straight back
    /// through the consumer handle, as <see cref="Xdp.ReturnBuff"/> would put them, without its per-call thread check.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void RecycleSegs(ref RxBuf head, int segs)
    {
        for (int k = 0; k < segs; k++)
            _ops.Recycle(ref Unsafe.Add(ref head, k));
    }

    private bool DownstreamHasRoom()
    {
        if (!PassRing.HasRoom(RefillBatch))
            return false;
        foreach (QueueBase q in _queues)
            if (!q.Inboxes[Index].HasRoom(RefillBatch))
                return false;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Redirect(ref RxBuf b)
    {
        int target = _ctx.RedirectQueue;
        if ((uint)target < (uint)_queues.Length && _ops.TryToRedirect(ref b, out RedirectItem item)
            && _queues[target].Inboxes[Index].TryWrite(item))
        {
            Counters.Redirect++;
            return;
        }
        Counters.RedirectErrors++;
        _ops.Recycle(ref b);
    }

    /// <summary>Transmits the TX ring; completions return the buffers to this queue's pool directly.</summary>
    private void FlushTx()
    {
        ReadOnlySpan<RxBuf> frames = _tx.AsSpan(0, _txCount);
        int sent = Nic.Transmit(frames);
        long bytes = 0;
        for (int i = 0; i < frames.Length; i++)
        {
            if (i < sent)
                bytes += frames[i].Len;
            if (_tx[i].TxFrame.IsNull)
            {
                _ops.Recycle(ref _tx[i]);
            }
            else
            {
                // A multi-buffer queue's frame: head and fragments back (xdp_return_frame_rx_napi).
                Xdp.ReturnFrameRxNapi(_tx[i].TxFrame);
                _tx[i].TxFrame = default;
            }
        }
        Counters.Tx += sent;
        Counters.TxBytes += bytes;
        Counters.TxErrors += frames.Length - sent;
        _txCount = 0;
    }

    /// <summary>Transmits frames other queues redirected here and returns them to their pools. Returns how many.</summary>
    private int DrainInboxes(int max)
    {
        int total = 0;
        foreach (SpscRing<RedirectItem> inbox in Inboxes)
        {
            int budget = max;
            while (budget > 0)
            {
                int n = 0;
                while (n < _redirectBatch.Length && inbox.TryRead(out _redirectBatch[n]))
                {
                    _redirectTx[n] = _ops.TxView(_redirectBatch[n]);
                    n++;
                }
                if (n == 0)
                    break;
                inbox.Release();
                int sent = Nic.Transmit(_redirectTx.AsSpan(0, n));
                long bytes = 0;
                for (int i = 0; i < sent; i++)
                    bytes += _redirectTx[i].Len;
                Counters.RedirectTx += sent;
                Counters.TxBytes += bytes;
                Counters.TxErrors += n - sent;
                _ops.ReturnRedirected(_redirectBatch.AsSpan(0, n), _queues);
                total += n;
                budget -= n;
            }
        }
        return total;
    }

    private void RefillRing(int minimum = RefillBatch)
    {
        while (_ring.Length - _posted >= minimum)
        {
            int tail = (_head + _posted) & _mask;
            int want = Math.Min(Math.Min(RefillBatch, _ring.Length - _posted), _ring.Length - tail);
            int got = _ops.Refill(_ring.AsSpan(tail, want));
            _posted += got;
            if (got < want)
                break;
        }
    }
}
