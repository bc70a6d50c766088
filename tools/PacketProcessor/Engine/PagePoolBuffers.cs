using System.Runtime.CompilerServices;
using UnmanagedPool;
using UnmanagedPool.Native;

namespace PacketProcessor.Engine;

/// <summary>
/// Buffers from the queue's own <see cref="PagePool"/>: bulk refill and recycle_direct through the consumer handle,
/// passes as <see cref="Packet"/>s marked for recycling, redirects as <see cref="XdpFrame"/>s returned in bulk
/// (<see cref="Xdp.ReturnFrameBulk"/>) by the transmitting thread.
/// </summary>
/// <remarks>
/// With 2 or 4 pieces per page the queue splits pages itself as mlx5 does (mlx5e_page_alloc_fragmented and
/// mlx5e_page_release_fragmented): <see cref="PagePool.FragmentPage(NetMemRef, long)"/> sets a bias of
/// <see cref="SplitBias"/> references once per page, each descriptor gets one piece (one reference, put by
/// whoever finishes with the frame), and when the last piece is posted the references of the pieces never handed
/// out are dropped with <see cref="PagePool.UnrefPage(NetMemRef, long)"/>. The last piece to come back recycles
/// the page.
/// </remarks>
internal unsafe struct PagePoolBuffers : IBufferOps
{
    private QueueBase _queue;
    private PagePoolConsumer _consumer;
    private XdpMemInfo _mem;
    private NetMemRef[] _scratch;
    private Packet[] _freePackets;
    private int _freeCount;
    private bool _xdpFrames;
    private PagePool _pool;
    private int _pieces;            // RX buffers per page: 1, 2 or 4
    private int _pieceSize;         // bytes per RX buffer
    private bool _dmaMap;
    private NetMemRef _splitPage;   // the page pieces are being cut from (split mode), Null when none
    private int _splitNext;         // pieces of it posted so far

    /// <summary>
    /// References set on a page the queue splits: mlx5's MLX5E_PAGECNT_BIAS_MAX (PAGE_SIZE / 64). More than the
    /// pieces a page has, so the count never reaches zero before the drain; small enough that a put never meets the
    /// pool's own fragment bias checks.
    /// </summary>
    public const long SplitBias = PageConstants.PageSize / 64;

    public readonly int BufferSize => _pieceSize;

    public void Attach(QueueBase queue)
    {
        _queue = queue;
        _xdpFrames = queue.RedirectAsXdpFrames;
        _pieces = queue.RxPiecesPerPage;
        _pieceSize = PageConstants.PageSize / _pieces;
        _dmaMap = queue.DmaMap;
        var pool = new PagePool(new PagePoolOptions
        {
            Name = $"rx{queue.Index}",
            PoolSize = QueueBase.PoolRingSize,
            QueueIndex = queue.Index,
            MemoryProvider = queue.Nic.MemoryProvider ?? new PageReserve(ReservePages(queue, _pieceSize)),
            Flags = _dmaMap ? PagePoolFlags.DmaMap : PagePoolFlags.None,
            DmaMapper = _dmaMap ? queue.DmaMapper ?? IdentityDmaMapper.Instance : null,
        });
        queue.Pool = pool;
        queue.Nic.AttachPool(pool);
        _pool = pool;
        _consumer = pool.BindConsumer();
        _mem = XdpMemInfo.ForPagePool(pool);
        _scratch = new NetMemRef[QueueBase.RefillBatch];
        _freePackets = new Packet[queue.PassRing.Capacity];
        for (int i = 0; i < _freePackets.Length; i++)
            _freePackets[i] = new Packet();
        _freeCount = _freePackets.Length;
    }

    /// <summary>
    /// The most pages of the queue's pool out of its provider at once: the descriptors posted and about to be
    /// transmitted, every frame the pass backlog and the other queues' inboxes can hold at its most pages, and the
    /// pool's own ring and caches full. The queue's <see cref="PageReserve"/> takes them all before the queue runs.
    /// </summary>
    internal static int ReservePages(QueueBase queue, int bufferSize)
    {
        int pieces = PageConstants.PageSize / bufferSize;
        int descriptors = 1;
        if (queue.Mtu > 0)
        {
            // As the NIC spreads a frame of Mtu + 18 bytes: the head holds less (the fragment list follows it).
            int capacity = bufferSize - RxBuf.Headroom;
            int head = capacity - XdpBuff.SharedInfoSize;
            int maxFrame = queue.Mtu + Frames.FrameBuilder.MtuOverhead;
            descriptors = maxFrame <= capacity ? 1 : 1 + (maxFrame - head + capacity - 1) / capacity;
        }
        // Pieces of split pages: a frame's descriptors lie on consecutive pieces, so on at most one page more than
        // they fill (each of those pages held until its last piece comes back).
        int pagesPerFrame = pieces == 1 ? descriptors : Math.Min(descriptors, (descriptors + pieces - 1) / pieces + 1);
        long frames = (long)queue.PassRing.Capacity + (long)queue.Inboxes.Length * QueueBase.RedirectInbox;
        long pages = queue.RingSize + QueueBase.RefillBatch + frames * pagesPerFrame
            + QueueBase.PoolRingSize + PagePool.AllocCacheSize + (long)Environment.ProcessorCount * PerCpuCacheSlots;
        return (int)Math.Min(pages, int.MaxValue);
    }

    /// <summary>Pages a pool's per-CPU cache holds (the pool's PerCpuCache.Capacity).</summary>
    private const int PerCpuCacheSlots = 64;

    public int Refill(Span<RxBuf> slots)
    {
        if (_pieces != 1)
            return RefillSplit(slots);
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
        _queue.Counters.RxPages += n;
        return n;
    }

    /// <summary>Split mode: posts pieces of pages the queue splits itself (see the remarks on the type).</summary>
    private int RefillSplit(Span<RxBuf> slots)
    {
        int origin = _queue.Index;
        int i = 0;
        while (i < slots.Length)
        {
            if (_splitPage.IsNull)
            {
                NetMemRef page = _consumer.AllocPage();
                if (page.IsNull)
                    break;
                // page_pool_fragment_netmem: the bias is set once, each piece handed out spends one reference.
                _pool.FragmentPage(page, SplitBias);
                _splitPage = page;
                _splitNext = 0;
                _queue.Counters.RxPages++;
            }
            ref RxBuf b = ref slots[i++];
            b.Ptr = _splitPage.Address + _splitNext * _pieceSize;
            b.Page = _splitPage.Descriptor;
            b.Origin = origin;
            if (++_splitNext == _pieces)
            {
                // The page is used up: drop the references of the pieces never handed out. Every piece was just
                // posted and none is back yet, so the pieces' references remain and the last one recycles the page.
                _pool.UnrefPage(_splitPage, SplitBias - _pieces);
                _splitPage = default;
            }
        }
        return i;
    }

    /// <summary>
    /// After the queue gave every posted buffer back: the rest of the bias of the page being split, if any, is
    /// dropped (page_pool_unref_netmem); when that was its last reference (every piece posted from it is back) the
    /// page goes back with page_pool_put_unrefed_netmem.
    /// </summary>
    private void DrainSplitPage()
    {
        if (_splitPage.IsNull)
            return;
        if (_pool.UnrefPage(_splitPage, SplitBias - _splitNext) == 0)
            _consumer.PutUnrefedPage(_splitPage, -1, allowDirect: true);
        _splitPage = default;
    }

    /// <summary>The kernel's <c>page_pool_dma_sync_for_cpu</c> on the frame the device wrote, when the pool maps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void SyncForCpu(ref RxBuf b)
    {
        if (_dmaMap)
            SyncMapped(ref b);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private readonly void SyncMapped(ref RxBuf b)
    {
        var page = new NetMemRef(b.Page);
        _pool.SyncForCpu(page, (int)(b.Ptr - page.Address) + RxBuf.Headroom, b.Len);
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
        var page = new NetMemRef(b.Page);
        packet.SetHead(page, (int)(b.Ptr - page.Address) + RxBuf.Headroom, b.Len);
        packet.MarkForRecycle();
        return true;
    }

    public bool TryPass(in XdpBuff xdp)
    {
        if (_freeCount == 0 && !ReclaimPackets())
            return false;
        Packet packet = _freePackets[_freeCount - 1];
        if (!_queue.PassRing.TryWrite(new PassItem { Packet = packet }))
            return false;
        _freeCount--;
        // xdp_build_skb_from_buff: the packet takes over the head's and every fragment's reference, marked for
        // recycling; the worker frees it.
        packet.BuildFromXdp(xdp);
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
        buff.FrameSize = _pieceSize;
        buff.Mem = _mem;
        buff.Flags = XdpBuffFlags.None;
        item = new RedirectItem { Frame = buff.ToFrame(), Len = b.Len, Origin = b.Origin };
        return !item.Frame.IsNull;
    }

    public readonly RxBuf TxView(in RedirectItem item) => _xdpFrames
        ? new() { Ptr = item.Frame.Data - RxBuf.Headroom, Len = item.Frame.GetFrameLength(), Origin = item.Origin }
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
        DrainSplitPage();
        ReclaimPackets();
        _queue.Nic.DetachPool(_queue.Pool!);
        _queue.Pool!.Dispose();
    }
}
