using System.Runtime.CompilerServices;
using UnmanagedPool;
using UnmanagedPool.Native;

namespace PacketProcessor.Engine;

/// <summary>
/// Buffers from the queue's own <see cref="PagePool"/>: bulk refill and recycle_direct through the consumer handle,
/// passes as <see cref="Packet"/>s marked for recycling, redirects as <see cref="XdpFrame"/>s returned in bulk
/// (<see cref="Xdp.ReturnFrameBulk"/>) by the transmitting thread.
/// </summary>
internal unsafe struct PagePoolBuffers : IBufferOps
{
    private QueueBase _queue;
    private PagePoolConsumer _consumer;
    private XdpMemInfo _mem;
    private NetMemRef[] _scratch;
    private Packet[] _freePackets;
    private int _freeCount;
    private bool _xdpFrames;

    public readonly int BufferSize => PageConstants.PageSize;

    public void Attach(QueueBase queue)
    {
        _queue = queue;
        _xdpFrames = queue.RedirectAsXdpFrames;
        var pool = new PagePool(new PagePoolOptions
        {
            Name = $"rx{queue.Index}", PoolSize = QueueBase.PoolRingSize, MemoryProvider = queue.Nic.MemoryProvider,
        });
        queue.Pool = pool;
        queue.Nic.AttachPool(pool);
        _consumer = pool.BindConsumer();
        _mem = XdpMemInfo.ForPagePool(pool);
        _scratch = new NetMemRef[QueueBase.RefillBatch];
        _freePackets = new Packet[queue.PassRing.Capacity];
        for (int i = 0; i < _freePackets.Length; i++)
            _freePackets[i] = new Packet();
        _freeCount = _freePackets.Length;
    }

    public int Refill(Span<RxBuf> slots)
    {
        Span<NetMemRef> pages = _scratch.AsSpan(0, Math.Min(slots.Length, _scratch.Length));
        int n = _consumer.AllocPages(pages);
        int origin = _queue.Index;
        for (int i = 0; i < n; i++)
        {
            NetMemRef page = pages[i];
            ref RxBuf b = ref slots[i];
            b.Ptr = page.Address;
            b.Page = page.Descriptor;
            b.Origin = origin;
        }
        return n;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Recycle(ref RxBuf b) => _consumer.RecycleDirect(new NetMemRef(b.Page));

    public bool TryPass(ref RxBuf b)
    {
        if (_freeCount == 0 && !ReclaimPackets())
            return false;
        Packet packet = _freePackets[_freeCount - 1];
        if (!_queue.PassRing.TryWrite(new PassItem { Packet = packet }))
            return false;
        _freeCount--;
        // The packet takes over the buffer's reference (build_skb + skb_mark_for_recycle); the worker frees it.
        packet.SetHead(new NetMemRef(b.Page), RxBuf.Headroom, b.Len);
        packet.MarkForRecycle();
        return true;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool ReclaimPackets()
    {
        SpscRing<Packet> back = _queue.PacketReturn;
        while (_freeCount < _freePackets.Length && back.TryRead(out Packet p))
            _freePackets[_freeCount++] = p;
        back.Release();
        return _freeCount > 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool TryToRedirect(ref RxBuf b, out RedirectItem item)
    {
        if (!_xdpFrames)
        {
            item = new RedirectItem { Ptr = b.Ptr, Page = b.Page, Len = b.Len, Origin = b.Origin };
            return true;
        }
        // The kernel's xdp_convert_buff_to_frame: the frame's descriptor goes into the headroom.
        XdpBuff buff;
        buff.DataHardStart = b.Ptr;
        buff.Data = b.Ptr + RxBuf.Headroom;
        buff.DataEnd = buff.Data + b.Len;
        buff.DataMeta = buff.Data + 1;
        buff.FrameSize = PageConstants.PageSize;
        buff.Mem = _mem;
        item = new RedirectItem { Frame = buff.ToFrame(), Len = b.Len, Origin = b.Origin };
        return !item.Frame.IsNull;
    }

    public readonly RxBuf TxView(in RedirectItem item) => _xdpFrames
        ? new() { Ptr = item.Frame.Data - RxBuf.Headroom, Len = item.Frame.Length, Origin = item.Origin }
        : new() { Ptr = item.Ptr, Page = item.Page, Len = item.Len, Origin = item.Origin };

    public readonly void ReturnRedirected(Span<RedirectItem> items, QueueBase[] queues)
    {
        if (_xdpFrames)
        {
            Span<XdpFrame> frames = stackalloc XdpFrame[items.Length];
            for (int i = 0; i < items.Length; i++)
                frames[i] = items[i].Frame;
            // xdp_return_frame_bulk: from a thread other than the origin pool's consumer the pages go through
            // that pool's per-CPU cache and ring, in batches.
            Xdp.ReturnFrameBulk(frames);
            return;
        }
        // page_pool_put_netmem_bulk per origin pool, runs of the same origin at a time.
        Span<NetMemRef> pages = stackalloc NetMemRef[items.Length];
        int start = 0;
        while (start < items.Length)
        {
            int origin = items[start].Origin;
            int n = 0;
            int i = start;
            for (; i < items.Length && items[i].Origin == origin; i++)
                pages[n++] = new NetMemRef(items[i].Page);
            queues[origin].Pool!.PutPages(pages[..n]);
            start = i;
        }
    }

    public void Detach()
    {
        ReclaimPackets();
        _queue.Nic.DetachPool(_queue.Pool!);
        _queue.Pool!.Dispose();
    }
}
