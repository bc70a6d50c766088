using PacketProcessor.Engine;
using UnmanagedPool;
using UnmanagedPool.Native;

namespace PacketProcessor.Drivers;

/// <summary>One queue of a NIC: receives into posted buffers, transmits frames. Used by its queue's thread only.</summary>
internal abstract class NicQueue : IDisposable
{
    /// <summary>
    /// Completes up to <c>posted.Length</c> descriptors in order: writes frames at <see cref="RxBuf.Headroom"/>
    /// into the posted buffers and sets their lengths. <paramref name="capacity"/> is the room after the headroom.
    /// Returns how many were completed; a frame longer than the room is completed with length -1 (truncated).
    /// </summary>
    public abstract int Receive(Span<RxBuf> posted, int capacity);

    /// <summary>
    /// Multi-buffer receive (the kernel's XDP multi-buffer, as mvneta's RX): completes descriptors in order, a frame
    /// longer than <paramref name="capacity"/> spanning several. Its first descriptor holds up to
    /// <paramref name="headCapacity"/> bytes (the head buffer leaves room for the fragment list) and
    /// <see cref="RxBuf.Segs"/> = the descriptors it spans; each following one holds up to
    /// <paramref name="capacity"/> bytes and <see cref="RxBuf.Segs"/> = 0. A frame longer than
    /// <paramref name="maxFrame"/> takes one descriptor with length -1. A frame that needs more descriptors than
    /// remain is not started. Returns how many descriptors were completed.
    /// </summary>
    /// <exception cref="NotSupportedException">The driver has no multi-buffer receive.</exception>
    public virtual int ReceiveMultiBuffer(Span<RxBuf> posted, int capacity, int headCapacity, int maxFrame) =>
        throw new NotSupportedException($"{GetType().Name} has no multi-buffer receive.");

    /// <summary>
    /// Whether <see cref="ReceiveMultiBuffer"/> may reorder the posted buffers: a NIC that offers each frame the
    /// most buffers a frame can take completes it into the first of them and leaves the rest posted after the
    /// completed ones. The queue then re-posts the span in its new order.
    /// </summary>
    public virtual bool ReordersPosted => false;

    /// <summary>Transmits the frames (completion is synchronous: the buffers are free once this returns). Returns how many left.</summary>
    public abstract int Transmit(ReadOnlySpan<RxBuf> frames);

    /// <summary>Whether an idle poll should wait for traffic (<see cref="WaitForTraffic"/>) instead of spinning.</summary>
    public virtual bool WaitsWhenIdle => false;

    /// <summary>Blocks up to <paramref name="timeoutMs"/> until frames may be ready.</summary>
    public virtual void WaitForTraffic(int timeoutMs)
    {
    }

    /// <summary>The memory the queue's pool must draw from (a UMEM shared by the queues), or null for the pool's own.</summary>
    public virtual IMemoryProvider? MemoryProvider => null;

    /// <summary>Frames the kernel dropped before the program saw them (socket statistics), readable at any time.</summary>
    public virtual long KernelDrops => 0;

    /// <summary>
    /// On the queue's thread before its measured window: the driver's first calls into the system happen now (the
    /// first call of each native entry point binds it, which allocates), so that none happens while measured.
    /// </summary>
    public virtual void Prepare()
    {
    }

    /// <summary>On the queue's thread once its pool exists, before the first poll.</summary>
    public virtual void AttachPool(PagePool pool)
    {
    }

    /// <summary>On the queue's thread after the last poll, before the pool is released: give back every page the driver holds.</summary>
    public virtual void DetachPool(PagePool pool)
    {
    }

    /// <inheritdoc />
    public virtual void Dispose()
    {
    }
}
