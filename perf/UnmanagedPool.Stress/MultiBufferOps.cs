#if HAS_FRAGMENTS
using System.Collections.Concurrent;
using System.Diagnostics;
using UnmanagedPool.Native;

namespace UnmanagedPool.Stress;

// The multi-buffer operation: an XDP buffer of a head page and 1..4 fragment pages (xdp_buff_add_frag, the
// fragment list in the head's tailroom), given back whole by one of the kernel's paths: xdp_return_buff,
// xdp_return_frame, xdp_return_frame_rx_napi, xdp_return_frame_bulk (here, or on another thread, as a frame
// redirected to another CPU), or as a packet built from it (xdp_build_skb_from_buff) and freed.
internal sealed unsafe partial class StressWorker
{
    private const int MaxMultiBufferFrags = 4;
    private const int FrameBatchSize = 8;
    private readonly HeldPage[] _multiBufferPages = new HeldPage[1 + MaxMultiBufferFrags];
    private readonly XdpFrame[] _frameBatch = new XdpFrame[FrameBatchSize];
    private int _frameBatchCount;

    /// <summary>Multi-buffer frames other workers sent here to be returned (as redirected frames are).</summary>
    public ConcurrentQueue<XdpFrame> FrameInbox { get; } = new();

    /// <summary>mbuf: a head and fragments, checked, then returned together by a random path.</summary>
    private void DoMultiBuffer()
    {
        IStressPool pool = Pool;
        int n = 2 + _random.NextInt(MaxMultiBufferFrags);
        int got = 0;
        for (int i = 0; i < n; i++)
        {
            if (!TryAllocDirectAndTake(pool, out HeldPage h))
                break;
            _multiBufferPages[got++] = h;
        }
        if (got == 0)
            return;
        UsedFragments = true;
        // The cookies are checked (and the ownership bits cleared) before the buffer is built: the frame descriptor
        // and the fragment list overwrite the head page's two cookies.
        for (int i = 0; i < got; i++)
            CheckBeforeReturn(_multiBufferPages[i]);
        NetMemRef head = _multiBufferPages[0].Page;
        PagePool owner = PagePool.FromPage(head) ?? throw new InvalidOperationException($"Page {head} belongs to no live pool.");
        XdpBuff xdp = default;
        xdp.Init(head.Size, XdpMemInfo.ForPagePool(owner));
        int headLength = 64 + _random.NextInt(head.Size - Xdp.PacketHeadroom - XdpBuff.SharedInfoSize - 64 + 1);
        xdp.Prepare(head.Address, Xdp.PacketHeadroom, headLength, metaValid: false);
        int total = headLength;
        for (int i = 1; i < got; i++)
        {
            NetMemRef frag = _multiBufferPages[i].Page;
            int length = 1 + _random.NextInt(frag.Size);
            if (!xdp.AddFrag(frag, 0, length, frag.Size))
                throw new InvalidOperationException("xdp_buff_add_frag refused a fragment below MAX_SKB_FRAGS.");
            total += length;
        }
        if (xdp.GetBuffLength() != total || xdp.NrFrags != got - 1)
            _run.Violations.Report(ViolationNames.PoolException, $"worker {_index}: xdp_get_buff_len {xdp.GetBuffLength()} for {total} bytes in {got} buffers");
        long start = Stopwatch.GetTimestamp();
        switch (_random.NextInt(6))
        {
            case 0:
                Xdp.ReturnBuff(xdp);
                break;
            case 1:
                Xdp.ReturnFrameRxNapi(ToFrame(xdp));
                break;
            case 2:
                Xdp.ReturnFrame(ToFrame(xdp));
                break;
            case 3:
                _frameBatch[_frameBatchCount++] = ToFrame(xdp);
                if (_frameBatchCount == FrameBatchSize)
                    FlushFrameBatch();
                break;
            case 4:
                _packet.BuildFromXdp(xdp);
                _packet.Free();
                break;
            default:
                StressWorker? other = RandomOther();
                XdpFrame frame = ToFrame(xdp);
                if (other != null && other.FrameInbox.Count < InboxLimit)
                    other.FrameInbox.Enqueue(frame);
                else
                    Xdp.ReturnFrame(frame);
                break;
        }
        Stress.Latency.Record(Latency[(int)LatencyKind.Put], Stopwatch.GetTimestamp() - start);
    }

    private static XdpFrame ToFrame(in XdpBuff xdp)
    {
        XdpFrame frame = xdp.ToFrame();
        if (frame.IsNull)
            throw new InvalidOperationException("xdp_convert_buff_to_frame failed on a buffer with the XDP headroom.");
        return frame;
    }

    /// <summary>Returns the frames this worker batched (xdp_return_frame_bulk).</summary>
    private void FlushFrameBatch()
    {
        int n = _frameBatchCount;
        _frameBatchCount = 0;
        if (n == 0)
            return;
        try
        {
            Xdp.ReturnFrameBulk(_frameBatch.AsSpan(0, n));
        }
        catch (Exception e)
        {
            _run.Violations.Report(ViolationNames.PoolException, $"worker {_index}: {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>Returns up to <paramref name="limit"/> frames other workers sent here, in bulks.</summary>
    private void DrainFrameInbox(int limit)
    {
        Span<XdpFrame> burst = stackalloc XdpFrame[FrameBatchSize];
        int n = 0;
        for (int i = 0; i < limit && FrameInbox.TryDequeue(out XdpFrame frame); i++)
        {
            burst[n++] = frame;
            if (n == burst.Length)
            {
                ReturnFrames(burst);
                n = 0;
            }
        }
        if (n > 0)
            ReturnFrames(burst[..n]);
    }

    private void ReturnFrames(ReadOnlySpan<XdpFrame> frames)
    {
        try
        {
            Xdp.ReturnFrameBulk(frames);
        }
        catch (Exception e)
        {
            _run.Violations.Report(ViolationNames.PoolException, $"worker {_index}: {e.GetType().Name}: {e.Message}");
        }
    }
}
#endif
