namespace PacketProcessor.Engine;

/// <summary>
/// Per-queue counters, written by the queue's thread alone with plain stores and read by the progress thread
/// (64-bit reads are not torn; a sample a few packets stale is fine).
/// </summary>
internal sealed class QueueCounters
{
    public long RxPackets;
    public long RxBytes;
    public long Drop;
    /// <summary>Malformed or truncated frames (XDP_ABORTED), dropped.</summary>
    public long Aborted;
    public long Pass;
    public long Tx;
    public long TxBytes;
    public long Redirect;
    /// <summary>Frames other queues redirected here and this queue transmitted.</summary>
    public long RedirectTx;
    /// <summary>Redirects dropped: the target's inbox was full, or the target does not exist.</summary>
    public long RedirectErrors;
    /// <summary>Passes dropped: the stack's backlog (or the packet objects) ran out (the kernel's netdev_max_backlog drop).</summary>
    public long PassBacklogDrops;
    /// <summary>Frames the driver failed to transmit (dropped).</summary>
    public long TxErrors;
    /// <summary>Pages the queue took from its pool to post as RX buffers (one per buffer, or one per 2 or 4 pieces).</summary>
    public long RxPages;
    /// <summary>Polls that found no posted buffer (the pool could not refill the ring).</summary>
    public long RxNoBuffers;
    /// <summary>Polls skipped because the pass backlog or a redirect inbox had no room for a whole budget (flow control).</summary>
    public long RxPaused;

    /// <summary>All drops: program drops, aborts, and every kind of error drop.</summary>
    public long AllDrops => Drop + Aborted + RedirectErrors + PassBacklogDrops + TxErrors;

    /// <summary>
    /// <see cref="AllDrops"/> read from another thread while the queue runs. Each read is an acquire (Volatile.Read) so
    /// that the caller's later reads of <see cref="RxPackets"/> are not moved before it: the queue thread adds a poll's
    /// frames to RxPackets before it counts any of their drops, and its stores become visible in program order on x64
    /// (on weaker memory models a sample may still show a drop a poll early; the final counters are exact).
    /// </summary>
    public long ReadAllDrops() =>
        Volatile.Read(ref Drop) + Volatile.Read(ref Aborted) + Volatile.Read(ref RedirectErrors) + Volatile.Read(ref PassBacklogDrops) + Volatile.Read(ref TxErrors);

    public QueueCounters Snapshot() => (QueueCounters)MemberwiseClone();
}
