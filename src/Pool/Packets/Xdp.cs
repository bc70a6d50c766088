using System.Runtime.ExceptionServices;
using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// XDP constants and frame return paths: the kernel's <c>xdp_return_frame</c>, <c>xdp_return_frame_rx_napi</c>
/// and <c>xdp_return_frame_bulk</c> (net/core/xdp.c). Each frame is returned once: the state word in its header
/// flips from live to returned before its page is put, so a second return throws and puts nothing.
/// </summary>
public static unsafe class Xdp
{
    /// <summary>The kernel's <c>XDP_PACKET_HEADROOM</c>.</summary>
    public const int PacketHeadroom = 256;

    /// <summary>The kernel's <c>XDP_BULK_QUEUE_SIZE</c>: pages put per pool in one bulk.</summary>
    public const int BulkQueueSize = 16;

    /// <summary>
    /// The kernel's <c>xdp_return_frame</c>: gives the frame's page back (to its pool through the ring, or with
    /// <c>put_page</c> when it is not a pool page), and for a multi-buffer frame every fragment's page first.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// The frame was already returned: nothing changes. Or a page failed its pool's checks, after every other page
    /// of the frame was put.
    /// </exception>
    public static void ReturnFrame(XdpFrame frame) => Return(frame, napiDirect: false);

    /// <summary>
    /// The kernel's <c>xdp_return_frame_rx_napi</c>: as <see cref="ReturnFrame"/>, recycling a pool page directly
    /// into the alloc cache when called on the pool's consumer thread (elsewhere it takes the ring path).
    /// </summary>
    /// <exception cref="InvalidOperationException">The frame was already returned: nothing changes.</exception>
    public static void ReturnFrameRxNapi(XdpFrame frame) => Return(frame, napiDirect: true);

    /// <summary>
    /// The kernel's <c>xdp_return_frame_bulk</c> with its flush: each frame's fragments and then its head; pool
    /// pages are collected per pool and put with
    /// <see cref="PagePool.PutPages(ReadOnlySpan{NetMemRef})"/> (one batch through the ring); other pages are dropped one by one.
    /// </summary>
    /// <exception cref="InvalidOperationException">A frame was already returned (or appears twice): no frame is returned.</exception>
    /// <remarks>
    /// Once the frames are claimed every one is put, even when a put throws (a DMA sync, a page that fails its
    /// pool's checks): the first exception is rethrown after the last frame.
    /// </remarks>
    public static void ReturnFrameBulk(ReadOnlySpan<XdpFrame> frames)
    {
        // Claim every frame first, so a double return in the batch leaves all of them untouched.
        for (int i = 0; i < frames.Length; i++)
        {
            if (!TryClaim(frames[i]))
            {
                for (int j = 0; j < i; j++)
                    // Volatile: undoes our claim; nobody else could have changed a state we hold.
                    Volatile.Write(ref frames[j].Descriptor->State, XdpFrameDescriptor.Live);
                FragThrowHelper.ThrowFrameReturned((nint)frames[i].Descriptor);
            }
        }
        Span<NetMemRef> queue = stackalloc NetMemRef[BulkQueueSize];
        var bulk = new BulkQueue(queue);
        foreach (XdpFrame frame in frames)
        {
            XdpFrameDescriptor* f = frame.Descriptor;
            bool pool = (XdpMemType)f->MemType == XdpMemType.PagePool;
            // The fragments first (as xdp_return_frame_bulk does): the list lives in the head's page, which the
            // head's put may hand out again.
            if ((f->Flags & (uint)XdpBuffFlags.HasFrags) != 0)
            {
                XdpSharedInfo* sinfo = frame.SharedInfo;
                int n = sinfo->NrFrags;
                for (int i = 0; i < n; i++)
                    bulk.Add(XdpSharedInfo.Frag(sinfo, i)->Page, pool, XdpSharedInfo.Frag(sinfo, i)->Address);
            }
            bulk.Add(NetMemRef.FromAddress(f->Data), pool, f->Data);
        }
        bulk.Finish();
    }

    /// <summary>
    /// The kernel's <c>xdp_return_buff</c>: gives back the head page and every fragment's page of a buffer that
    /// was not converted to a frame (an XDP_DROP or a failed transmit), to their pool with direct recycling when
    /// called on the pool's consumer thread. The buffer must not be used afterwards.
    /// </summary>
    /// <exception cref="InvalidOperationException">A page failed its pool's checks (after every other page was put).</exception>
    /// <remarks>Every page is put even when one put throws: the first exception is rethrown after the last.</remarks>
    public static void ReturnBuff(in XdpBuff xdp)
    {
        bool pool = xdp.Mem.Type == XdpMemType.PagePool;
        Exception? first = null;
        if (xdp.HasFrags)
        {
            XdpSharedInfo* sinfo = xdp.SharedInfo;
            int n = sinfo->NrFrags;
            for (int i = 0; i < n; i++)
                PutOne(XdpSharedInfo.Frag(sinfo, i)->Page, pool, XdpSharedInfo.Frag(sinfo, i)->Address, napiDirect: true, ref first);
        }
        PutOne(NetMemRef.FromAddress(xdp.Data), pool, xdp.Data, napiDirect: true, ref first);
        if (first != null)
            ExceptionDispatchInfo.Throw(first);
    }

    /// <summary>Pool pages gathered per pool and put in batches; other pages put one by one; the first exception kept.</summary>
    private ref struct BulkQueue
    {
        private readonly Span<NetMemRef> _queue;
        private int _count;
        private PagePool? _current;
        private Exception? _first;

        public BulkQueue(Span<NetMemRef> queue) => _queue = queue;

        public void Add(NetMemRef page, bool poolMem, byte* address)
        {
            try
            {
                if (!poolMem || page.IsNull || !page.IsPagePool)
                {
                    PutShared(page, address);
                    return;
                }
                PagePool pool = PagePool.FromPpHandle(page.Value.Pp) ?? NoPool(page);
                if (_count == _queue.Length || (_current != null && _current != pool))
                {
                    Flush(_current!, _queue[.._count], ref _first);
                    _count = 0;
                }
                _current = pool;
                _queue[_count++] = page;
            }
            catch (Exception e)
            {
                // This page failed its checks: keep the first exception and put the rest.
                _first ??= e;
            }
        }

        public void Finish()
        {
            if (_count > 0)
                Flush(_current!, _queue[.._count], ref _first);
            _count = 0;
            if (_first != null)
                ExceptionDispatchInfo.Throw(_first);
        }
    }

    private static void Flush(PagePool pool, ReadOnlySpan<NetMemRef> pages, ref Exception? first)
    {
        try
        {
            pool.PutPages(pages);
        }
        catch (Exception e)
        {
            // The bulk put finishes its batch before it throws; later pools' frames must still be put.
            first ??= e;
        }
    }

    private static void Return(XdpFrame frame, bool napiDirect)
    {
        if (!TryClaim(frame))
            FragThrowHelper.ThrowFrameReturned((nint)frame.Descriptor);
        XdpFrameDescriptor* f = frame.Descriptor;
        bool pool = (XdpMemType)f->MemType == XdpMemType.PagePool;
        if ((f->Flags & (uint)XdpBuffFlags.HasFrags) == 0)
        {
            PutOne(NetMemRef.FromAddress(f->Data), pool, f->Data, napiDirect);
            return;
        }
        // xdp_return_frame: every fragment, then the head (whose page holds the list).
        Exception? first = null;
        XdpSharedInfo* sinfo = frame.SharedInfo;
        int n = sinfo->NrFrags;
        for (int i = 0; i < n; i++)
            PutOne(XdpSharedInfo.Frag(sinfo, i)->Page, pool, XdpSharedInfo.Frag(sinfo, i)->Address, napiDirect, ref first);
        PutOne(NetMemRef.FromAddress(f->Data), pool, f->Data, napiDirect, ref first);
        if (first != null)
            ExceptionDispatchInfo.Throw(first);
    }

    /// <summary>The kernel's <c>__xdp_return</c> for one page: to its pool, or <c>put_page</c>.</summary>
    private static void PutOne(NetMemRef page, bool poolMem, byte* address, bool napiDirect)
    {
        if (poolMem && !page.IsNull && page.IsPagePool)
        {
            PagePool pool = PagePool.FromPpHandle(page.Value.Pp) ?? NoPool(page);
            pool.PutPage(page, -1, napiDirect);
        }
        else
        {
            PutShared(page, address);
        }
    }

    private static void PutOne(NetMemRef page, bool poolMem, byte* address, bool napiDirect, ref Exception? first)
    {
        try
        {
            PutOne(page, poolMem, address, napiDirect);
        }
        catch (Exception e)
        {
            // Keep the first and go on: every other page of the frame must still be put.
            first ??= e;
        }
    }

    private static bool TryClaim(XdpFrame frame)
    {
        if (frame.IsNull)
            FragThrowHelper.ThrowNullFrame();
        // Interlocked: two threads returning the same frame; exactly one flips it.
        return Interlocked.CompareExchange(ref frame.Descriptor->State, XdpFrameDescriptor.Returned, XdpFrameDescriptor.Live) == XdpFrameDescriptor.Live;
    }

    /// <summary>
    /// A frame that is not a pool frame (<c>MEM_TYPE_PAGE_SHARED</c>) drops its page reference with put_page,
    /// except that a pool page of which only its pool's reference is left goes back to its pool, as a packet not
    /// marked for recycling does (see <see cref="Packet.PpRecycle"/>).
    /// </summary>
    private static void PutShared(NetMemRef page, byte* address)
    {
        if (page.IsNull)
            PoolThrowHelper.ThrowForeignAddress(address);
        Packet.PutPageRef(page, ppRecycle: false);
    }

    private static PagePool NoPool(NetMemRef page)
    {
        FragThrowHelper.ThrowNoPool(page);
        return null!;
    }
}
