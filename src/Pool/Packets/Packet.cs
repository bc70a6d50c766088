using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// A packet buffer in the manner of the kernel's <c>sk_buff</c>: a linear head plus up to <see cref="MaxFrags"/>
/// page fragments, each holding one page reference. <see cref="Free"/> gives every reference back: pool pages to
/// the pool their <c>pp</c> field names (the kernel's <c>napi_pp_put_page</c>), other pages to their provider
/// (<c>put_page</c>).
/// </summary>
/// <remarks>
/// A packet object is reusable: after <see cref="Free"/> it can be built again, and it allocates nothing while
/// it is built or freed (the fragments live in an inline array). One thread builds a packet; any thread may free
/// it, once: a second <see cref="Free"/> throws and changes nothing.
/// </remarks>
public sealed unsafe class Packet
{
    /// <summary>The kernel's default <c>MAX_SKB_FRAGS</c>.</summary>
    public const int MaxFrags = 17;

    private const int StateEmpty = 0;
    private const int StateLive = 1;

    [InlineArray(MaxFrags)]
    private struct FragArray
    {
        private SkbFrag _element0;
    }

    private SkbFrag _head;
    private FragArray _frags;
    private int _nrFrags;
    private int _state;

    /// <summary>
    /// The kernel's <c>skb-&gt;pp_recycle</c> (set by <c>skb_mark_for_recycle</c>): pages carrying the page-pool
    /// signature go back to their pool on <see cref="Free"/>. When false, pages are dropped with
    /// <see cref="NetMemRef.PutPage"/>, except a pool page of which only its pool's reference is left: the packet
    /// holds that reference, so the page goes back to its pool as under recycling (dropping it to the provider
    /// would hand it out twice); debug mode reports that with an exception after every page was given back.
    /// </summary>
    public bool PpRecycle { get; set; }

    /// <summary>The linear head (empty when the packet has none).</summary>
    public SkbFrag Head => _head;

    /// <summary>The kernel's <c>skb_shinfo(skb)-&gt;nr_frags</c>.</summary>
    public int NrFrags => _nrFrags;

    /// <summary>The fragments, in order.</summary>
    public ReadOnlySpan<SkbFrag> Frags => ((ReadOnlySpan<SkbFrag>)_frags)[.._nrFrags];

    /// <summary>The kernel's <c>skb-&gt;len</c>: head plus fragment bytes.</summary>
    public int Length
    {
        get
        {
            int len = _head.Length;
            foreach (SkbFrag f in Frags)
                len += f.Length;
            return len;
        }
    }

    /// <summary>Whether the packet holds page references (built and not yet freed).</summary>
    public bool IsLive => Volatile.Read(ref _state) == StateLive;

    /// <summary>The kernel's <c>skb_mark_for_recycle</c>.</summary>
    public void MarkForRecycle() => PpRecycle = true;

    /// <summary>
    /// Sets the linear head (the kernel's <c>build_skb</c> on a pool buffer). The packet takes over the caller's
    /// reference on <paramref name="page"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The packet already has a head.</exception>
    public void SetHead(NetMemRef page, int offset, int length)
    {
        var head = new SkbFrag(page, offset, length);
        if (!_head.IsEmpty)
            throw new InvalidOperationException("The packet already has a head.");
        _head = head;
        _state = StateLive;
    }

    /// <summary>
    /// The kernel's <c>skb_add_rx_frag</c>: appends a fragment. The packet takes over the caller's reference on
    /// <paramref name="page"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The packet already holds <see cref="MaxFrags"/> fragments.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void AddFrag(NetMemRef page, int offset, int length)
    {
        int n = _nrFrags;
        if ((uint)n >= MaxFrags)
            FragThrowHelper.ThrowPacketFull();
        _frags[n] = new SkbFrag(page, offset, length);
        _nrFrags = n + 1;
        _state = StateLive;
    }

    /// <summary>
    /// The kernel's <c>xdp_build_skb_from_buff</c>: builds this packet from an XDP buffer, the head from
    /// <see cref="XdpBuff.Data"/> to <see cref="XdpBuff.DataEnd"/> and every fragment, taking over the buffer's
    /// page references (the buffer must not be returned afterwards). Marked for recycling when the buffer's memory
    /// is <see cref="XdpMemType.PagePool"/> (<c>skb_mark_for_recycle</c>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The packet is live: nothing changes.</exception>
    public void BuildFromXdp(in XdpBuff xdp)
    {
        if (IsLive)
            FragThrowHelper.ThrowPacketLive();
        BuildFrom(xdp.Data, xdp.Length, xdp.Frags, xdp.Mem.Type);
    }

    /// <summary>
    /// The kernel's <c>xdp_build_skb_from_frame</c>: builds this packet from an XDP frame, head and every fragment,
    /// taking over the frame's page references; the frame counts as returned afterwards (its descriptor's state
    /// flips, so a later <see cref="Xdp.ReturnFrame"/> throws and puts nothing). Marked for recycling when the
    /// frame's memory is <see cref="XdpMemType.PagePool"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The packet is live, or the frame was already returned: nothing changes.</exception>
    public void BuildFromXdp(XdpFrame frame)
    {
        if (frame.IsNull)
            FragThrowHelper.ThrowNullFrame();
        if (IsLive)
            FragThrowHelper.ThrowPacketLive();
        XdpFrameDescriptor* f = frame.Descriptor;
        // Interlocked: the frame moves to this packet once; a concurrent return or second build loses.
        if (Interlocked.CompareExchange(ref f->State, XdpFrameDescriptor.Returned, XdpFrameDescriptor.Live) != XdpFrameDescriptor.Live)
            FragThrowHelper.ThrowFrameReturned((nint)f);
        BuildFrom(f->Data, (int)f->Len, frame.Frags, (XdpMemType)f->MemType);
    }

    private void BuildFrom(byte* data, int length, ReadOnlySpan<SkbFrag> frags, XdpMemType memType)
    {
        NetMemRef head = NetMemRef.FromAddress(data);
        if (head.IsNull)
            PoolThrowHelper.ThrowForeignAddress(data);
        _head = new SkbFrag(head, (int)(data - head.Address), length);
        frags.CopyTo(_frags);
        _nrFrags = frags.Length;
        PpRecycle = memType == XdpMemType.PagePool;
        // Volatile: publishes the fields before the packet counts as live to a freeing thread.
        Volatile.Write(ref _state, StateLive);
    }

    /// <summary>
    /// Makes <paramref name="destination"/> share this packet's pages (as <c>pskb_copy</c> sharing frags): it gets
    /// the same head and fragments and one more reference on each page (<see cref="PagePool.RefPage"/> for pool
    /// pages under <see cref="PpRecycle"/>, <see cref="NetMemRef.GetPage"/> otherwise). A shared page goes back
    /// to its pool only when both packets are freed.
    /// </summary>
    /// <exception cref="InvalidOperationException">This packet is not live, or <paramref name="destination"/> is.</exception>
    public void ShareInto(Packet destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (!IsLive)
            FragThrowHelper.ThrowPacketNotLive();
        if (destination.IsLive || ReferenceEquals(destination, this))
            FragThrowHelper.ThrowPacketLive();
        if (!_head.IsEmpty)
            GetPageRef(_head.Page, PpRecycle);
        for (int i = 0; i < _nrFrags; i++)
            GetPageRef(_frags[i].Page, PpRecycle);
        destination._head = _head;
        destination._frags = _frags;
        destination._nrFrags = _nrFrags;
        destination.PpRecycle = PpRecycle;
        // Volatile: publishes the copied fields before the packet counts as live to a freeing thread.
        Volatile.Write(ref destination._state, StateLive);
    }

    /// <summary>
    /// The kernel's <c>skb_free_head</c> plus <c>skb_release_data</c>: drops the packet's reference on the head
    /// page and on every fragment's page. A pool page (pp_magic carries the signature) goes to the pool its
    /// <c>pp</c> field names, with direct recycling when this runs on that pool's consumer thread; any other page
    /// goes back to its provider. The packet is empty afterwards and can be built again.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// The packet was already freed (or never built): nothing changes. Or a page failed its pool's checks (after
    /// every other page was still given back).
    /// </exception>
    /// <remarks>
    /// Every page is put even when one put throws (a page that fails its checks, a DMA sync that throws): the
    /// first exception is rethrown once all are put, and the packet is empty either way.
    /// </remarks>
    public void Free()
    {
        // Interlocked: two threads freeing the same packet must not both put its pages; one wins.
        if (Interlocked.Exchange(ref _state, StateEmpty) != StateLive)
            FragThrowHelper.ThrowPacketNotLive();
        bool recycle = PpRecycle;
        Exception? first = null;
        // Each put names its fragment's address: debug mode checks the piece of a fragment page it names.
        if (!_head.IsEmpty)
            PutFragRef(_head, recycle, ref first);
        int n = _nrFrags;
        for (int i = 0; i < n; i++)
            PutFragRef(_frags[i], recycle, ref first);
        _head = default;
        _nrFrags = 0;
        PpRecycle = false;
        if (first != null)
            ExceptionDispatchInfo.Throw(first);
    }

    /// <summary>Takes one more reference on a page the way <see cref="Free"/> will drop it.</summary>
    /// <exception cref="InvalidOperationException">The page is not referenced, or names no live pool.</exception>
    public static void GetPageRef(NetMemRef page, bool ppRecycle)
    {
        if (ppRecycle && !page.IsNull && page.IsPagePool)
        {
            PagePool pool = PagePool.FromPpHandle(page.Value.Pp) ?? ThrowNoPool(page);
            pool.RefPage(page);
        }
        else
        {
            page.GetPage();
        }
    }

    /// <summary>
    /// The kernel's <c>napi_pp_put_page</c> falling back to <c>put_page</c>: drops one reference on a page. Without
    /// <paramref name="ppRecycle"/> a pool page of which only its pool's reference is left still goes back to its
    /// pool (see <see cref="PpRecycle"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// See <see cref="PagePool.PutPage(NetMemRef, int, bool)"/> and <see cref="NetMemRef.PutPage"/>; in debug mode
    /// also a pool page put without <paramref name="ppRecycle"/> that held its pool's reference (after it went back).
    /// </exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PutPageRef(NetMemRef page, bool ppRecycle) => PutPageRef(page, null, ppRecycle);

    /// <summary>
    /// <see cref="PutPageRef(NetMemRef, bool)"/> naming the fragment's address inside the page, when known
    /// (<paramref name="address"/> not null): a pool put by address (<see cref="PagePool.PutPieceAt"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PutPageRef(NetMemRef page, byte* address, bool ppRecycle)
    {
        if (ppRecycle && !page.IsNull && page.IsPagePool)
        {
            PagePool pool = PagePool.FromPpHandle(page.Value.Pp) ?? ThrowNoPool(page);
            PutToPool(pool, page, address);
        }
        else
        {
            PutPageNotRecycling(page, address);
        }
    }

    private static void PutToPool(PagePool pool, NetMemRef page, byte* address)
    {
        if (address != null)
            pool.PutPieceAt(page, address, -1, allowDirect: true);
        else
            pool.PutPage(page, -1, allowDirect: true);
    }

    /// <summary>
    /// <c>put_page</c> for a packet not marked for recycling. A pool page whose only page reference is its pool's
    /// (this packet holds a pool reference: the whole page or a fragment) goes to its pool, never to the provider.
    /// </summary>
    private static void PutPageNotRecycling(NetMemRef page, byte* address)
    {
        // Volatile: a plain hint; NetMemRef.PutPage rechecks atomically and refuses a pool's last reference.
        if (!page.IsNull && page.IsPagePool && Volatile.Read(ref page.Value.RefCount) == 1)
        {
            PagePool pool = PagePool.FromPpHandle(page.Value.Pp) ?? ThrowNoPool(page);
            PutToPool(pool, page, address);
            if (pool.DebugMode)
                FragThrowHelper.ThrowNotMarkedForRecycle(page);
            return;
        }
        page.PutPage();
    }

    private static void PutFragRef(in SkbFrag frag, bool ppRecycle, ref Exception? first)
    {
        try
        {
            PutPageRef(frag.Page, frag.Address, ppRecycle);
        }
        catch (Exception e)
        {
            // Keep the first and go on: every other page must still be put (a DMA sync that throws included).
            first ??= e;
        }
    }

    private static PagePool ThrowNoPool(NetMemRef page)
    {
        FragThrowHelper.ThrowNoPool(page);
        return null!;
    }

    /// <inheritdoc />
    public override string ToString() => $"Packet(len {Length}, head {_head}, {_nrFrags} frags{(PpRecycle ? ", pp_recycle" : "")})";
}
