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
    /// <c>put_page</c> when it is not a pool page).
    /// </summary>
    /// <exception cref="InvalidOperationException">The frame was already returned: nothing changes.</exception>
    public static void ReturnFrame(XdpFrame frame) => Return(frame, napiDirect: false);

    /// <summary>
    /// The kernel's <c>xdp_return_frame_rx_napi</c>: as <see cref="ReturnFrame"/>, recycling a pool page directly
    /// into the alloc cache when called on the pool's consumer thread (elsewhere it takes the ring path).
    /// </summary>
    /// <exception cref="InvalidOperationException">The frame was already returned: nothing changes.</exception>
    public static void ReturnFrameRxNapi(XdpFrame frame) => Return(frame, napiDirect: true);

    /// <summary>
    /// The kernel's <c>xdp_return_frame_bulk</c> with its flush: pool pages are collected per pool and put with
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
        int count = 0;
        PagePool? current = null;
        Exception? first = null;
        foreach (XdpFrame frame in frames)
        {
            try
            {
                NetMemRef page = NetMemRef.FromAddress(frame.Descriptor->Data);
                if ((XdpMemType)frame.Descriptor->MemType != XdpMemType.PagePool || page.IsNull || !page.IsPagePool)
                {
                    PutShared(page, frame);
                    continue;
                }
                PagePool pool = PagePool.FromPpHandle(page.Value.Pp) ?? NoPool(page);
                if (count == BulkQueueSize || (current != null && current != pool))
                {
                    Flush(current!, queue[..count], ref first);
                    count = 0;
                }
                current = pool;
                queue[count++] = page;
            }
            catch (Exception e)
            {
                // This frame's page failed its checks: keep the first exception and put the rest.
                first ??= e;
            }
        }
        if (count > 0)
            Flush(current!, queue[..count], ref first);
        if (first != null)
            ExceptionDispatchInfo.Throw(first);
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
        NetMemRef page = NetMemRef.FromAddress(frame.Descriptor->Data);
        if ((XdpMemType)frame.Descriptor->MemType == XdpMemType.PagePool && !page.IsNull && page.IsPagePool)
        {
            PagePool pool = PagePool.FromPpHandle(page.Value.Pp) ?? NoPool(page);
            pool.PutPage(page, -1, napiDirect);
        }
        else
        {
            PutShared(page, frame);
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
    private static void PutShared(NetMemRef page, XdpFrame frame)
    {
        if (page.IsNull)
            PoolThrowHelper.ThrowForeignAddress(frame.Descriptor->Data);
        Packet.PutPageRef(page, ppRecycle: false);
    }

    private static PagePool NoPool(NetMemRef page)
    {
        FragThrowHelper.ThrowNoPool(page);
        return null!;
    }
}
