using System.Runtime.CompilerServices;
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
    [SkipLocalsInit] // the buffers are written before they are read
    public static void ReturnFrameBulk(ReadOnlySpan<XdpFrame> frames)
    {
        Span<NetMemRef> ahead = stackalloc NetMemRef[ResolvedAhead];
        int resolved = ClaimAll(frames, ahead);
        Span<NetMemRef> queue = stackalloc NetMemRef[BulkQueueSize];
        var bulk = new BulkQueue(queue);
        for (int i = 0; i < frames.Length; i++)
        {
            NetMemRef page = i < resolved ? ahead[i] : CommonCasePage(frames[i].Descriptor);
            // The common case, with no lookup of the pool and no exception frame: a pool page of a frame without
            // fragments, of the pool being gathered. Anything else, the full path.
            if (!page.IsNull && bulk.TryAddSamePool(page))
                continue;
            AddFrame(ref bulk, frames[i]);
        }
        bulk.Finish();
    }

    /// <summary>
    /// Frames whose pages <see cref="ClaimAll"/> looks up as it claims them: the claim loads the frame's line and the
    /// lookup the page's descriptor, both misses in flight together, and the gathering pass reads them from the
    /// cache (arbitrary: two TX completion bursts).
    /// </summary>
    private const int ResolvedAhead = 64;

    /// <summary>
    /// The page of a frame of the common case (a pool frame without fragments, one flag check, whose page is a
    /// pool page), or <see cref="NetMemRef.Null"/> for any other frame.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static NetMemRef CommonCasePage(XdpFrameDescriptor* f)
    {
        if (f->MemType != (uint)XdpMemType.PagePool || (f->Flags & (uint)XdpBuffFlags.HasFrags) != 0)
            return default;
        NetMemRef page = NetMemRef.FromAddress(f->Data);
        return !page.IsNull && page.IsPagePool ? page : default;
    }

    /// <summary>
    /// Claims every frame (live to returned) before any page is put, so a double return in the batch (a frame
    /// returned before, or listed twice) leaves all of them untouched and throws. Writes the
    /// <see cref="CommonCasePage"/> of the first frames to <paramref name="ahead"/> and returns how many.
    /// </summary>
    /// <remarks>
    /// A plain read and write of each state word, not a compare-exchange: the caller owns the frames it returns (a
    /// TX completion owns what it sent), so the claim has a race to lose only when two threads return the same
    /// frame at once. Both may then pass it and put the page: it lands in its pool twice, and the hand-out check
    /// (a page is handed out only from pp_ref_count 0) drops the second entry, so it is still never handed out
    /// twice. A return after a return is refused as before. The locked compare-exchange cost about a sixth of the
    /// bulk return on one thread (perf/RESULTS-cross-thread.md), and across threads it makes the frames' cache-line
    /// misses wait one after the other.
    /// </remarks>
    private static int ClaimAll(ReadOnlySpan<XdpFrame> frames, Span<NetMemRef> ahead)
    {
        int resolved = Math.Min(frames.Length, ahead.Length);
        for (int i = 0; i < frames.Length; i++)
        {
            XdpFrame frame = frames[i];
            if (frame.IsNull)
                FragThrowHelper.ThrowNullFrame();
            XdpFrameDescriptor* f = frame.Descriptor;
            // Volatile: pairs with the release in ToFrame, so a frame seen live has its fields written.
            if (Volatile.Read(ref f->State) != XdpFrameDescriptor.Live)
                Unclaim(frames[..i], f);
            // Volatile: a state read by IsLive and by other threads' returns; no ordering beyond the store itself.
            Volatile.Write(ref f->State, XdpFrameDescriptor.Returned);
            if (i < resolved)
                ahead[i] = CommonCasePage(f);
        }
        return resolved;
    }

    /// <summary>Undoes the claims of <paramref name="claimed"/> and throws for <paramref name="refused"/>.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Unclaim(ReadOnlySpan<XdpFrame> claimed, XdpFrameDescriptor* refused)
    {
        foreach (XdpFrame frame in claimed)
            // Volatile: undoes our claim; nobody else could have changed a state we hold.
            Volatile.Write(ref frame.Descriptor->State, XdpFrameDescriptor.Live);
        FragThrowHelper.ThrowFrameReturned((nint)refused);
    }

    /// <summary>
    /// The full path of <see cref="ReturnFrameBulk"/> for one claimed frame: its fragments and then its head, each
    /// page gathered for its pool or dropped.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AddFrame(ref BulkQueue bulk, XdpFrame frame)
    {
        XdpFrameDescriptor* f = frame.Descriptor;
        bool pool = (XdpMemType)f->MemType == XdpMemType.PagePool;
        // The fragments first (as xdp_return_frame_bulk does): the list lives in the head's page, which the head's
        // put may hand out again.
        if ((f->Flags & (uint)XdpBuffFlags.HasFrags) != 0)
        {
            XdpSharedInfo* sinfo = frame.SharedInfo;
            int n = sinfo->NrFrags;
            for (int i = 0; i < n; i++)
                bulk.Add(XdpSharedInfo.Frag(sinfo, i)->Page, pool, XdpSharedInfo.Frag(sinfo, i)->Address);
        }
        bulk.Add(NetMemRef.FromAddress(f->Data), pool, f->Data);
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

    /// <summary>
    /// Pool pages gathered per pool and put in batches of up to <see cref="BulkQueueSize"/>; other pages put one by
    /// one; the first exception kept.
    /// </summary>
    private ref struct BulkQueue
    {
        private readonly Span<NetMemRef> _queue;
        private int _count;
        private PagePool? _current;
        private nint _currentPp; // _current's PpHandle (0 before the first pool page): a page whose Pp equals it is _current's
        private Exception? _first;

        public BulkQueue(Span<NetMemRef> queue) => _queue = queue;

        /// <summary>
        /// Appends a pool page (the caller checked <see cref="NetMemRef.IsPagePool"/>) when it belongs to the pool
        /// being gathered and the queue has room; false, changing nothing, otherwise.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool TryAddSamePool(NetMemRef page)
        {
            nint pp = page.Value.Pp;
            int count = _count;
            if (pp != _currentPp || pp == 0 || (uint)count >= (uint)_queue.Length)
                return false;
            _queue[count] = page;
            _count = count + 1;
            return true;
        }

        public void Add(NetMemRef page, bool poolMem, byte* address)
        {
            try
            {
                if (!poolMem || page.IsNull || !page.IsPagePool)
                {
                    PutShared(page, address);
                    return;
                }
                nint pp = page.Value.Pp;
                if (pp != _currentPp || pp == 0)
                {
                    PagePool pool = PagePool.FromPpHandle(pp) ?? NoPool(page);
                    if (_count > 0)
                        FlushQueue();
                    _current = pool;
                    _currentPp = pp;
                }
                else if (_count == _queue.Length)
                {
                    FlushQueue();
                }
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
                FlushQueue();
            if (_first != null)
                ExceptionDispatchInfo.Throw(_first);
        }

        private void FlushQueue()
        {
            Flush(_current!, _queue[.._count], ref _first);
            _count = 0;
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
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
