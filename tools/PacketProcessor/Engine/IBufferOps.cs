namespace PacketProcessor.Engine;

/// <summary>
/// Where a queue's buffers come from and go back to. Implemented by structs, so that the poll loop, generic over
/// this type, runs with no interface dispatch per frame. All methods run on the queue's thread unless noted.
/// </summary>
internal interface IBufferOps
{
    /// <summary>Bytes per buffer (headroom included).</summary>
    int BufferSize { get; }

    /// <summary>On the queue's thread, before the first poll: creates the pool and binds its consumer.</summary>
    void Attach(QueueBase queue);

    /// <summary>Bulk allocation: posts buffers into <paramref name="slots"/>; returns how many.</summary>
    int Refill(Span<RxBuf> slots);

    /// <summary>
    /// Before the program reads a received frame: the kernel's <c>page_pool_dma_sync_for_cpu</c> on the bytes the
    /// device wrote, when the buffers are mapped for a device.
    /// </summary>
    void SyncForCpu(ref RxBuf b);

    /// <summary>XDP_DROP and TX completion on this queue: the buffer goes straight back (recycle_direct).</summary>
    void Recycle(ref RxBuf b);

    /// <summary>XDP_PASS: hands the frame to the stack (written, published at the end of the poll); false when the backlog is full.</summary>
    bool TryPass(ref RxBuf b);

    /// <summary>XDP_PASS of a multi-buffer queue: the buffer, head and fragments, becomes a packet; false when the backlog is full.</summary>
    bool TryPass(in UnmanagedPool.XdpBuff xdp);

    /// <summary>XDP_REDIRECT: the frame as it travels to another queue; false when it cannot be converted.</summary>
    bool TryToRedirect(ref RxBuf b, out RedirectItem item);

    /// <summary>On the transmitting queue's thread: the descriptor a redirected frame is transmitted from.</summary>
    RxBuf TxView(in RedirectItem item);

    /// <summary>On the transmitting queue's thread: returns transmitted redirected frames to the pools they came from.</summary>
    void ReturnRedirected(Span<RedirectItem> items, QueueBase[] queues);

    /// <summary>On the queue's thread after the last poll: everything is back; releases the pool.</summary>
    void Detach();
}
