using UnmanagedPool;

namespace PacketProcessor.Engine;

/// <summary>One queue's totals at exit.</summary>
public sealed class QueueResult
{
    public int Index { get; init; }
    public long RxPackets { get; init; }
    public long RxBytes { get; init; }
    public long Drop { get; init; }
    public long Aborted { get; init; }
    public long Pass { get; init; }
    public long Tx { get; init; }
    public long Redirect { get; init; }
    public long RedirectTx { get; init; }
    public long RedirectErrors { get; init; }
    public long PassBacklogDrops { get; init; }
    public long TxErrors { get; init; }
    public long RxNoBuffers { get; init; }
    public long RxPaused { get; init; }
    /// <summary>Pages taken from the pool to post as RX buffers.</summary>
    public long RxPages { get; init; }
    public long Matched { get; init; }
    /// <summary>Page-pool statistics after the pool was released; null for array buffers.</summary>
    public PagePoolStats? Pool { get; init; }
    /// <summary>Buffers not given back at exit (must be 0).</summary>
    public long InFlight { get; init; }
    /// <summary>
    /// Frames the kernel dropped for this queue before the program saw them: the AF_XDP statistics (rx_dropped,
    /// rx_invalid_descs, rx_ring_full, rx_fill_ring_empty_descs) for afxdp, PACKET_STATISTICS tp_drops for afpacket.
    /// </summary>
    public long KernelDrops { get; init; }
    /// <summary>Arrays rented (array buffers).</summary>
    public long ArraysRented { get; init; }
    /// <summary>Arrays returned (array buffers).</summary>
    public long ArraysReturned { get; init; }

    /// <summary>Managed bytes this queue's thread allocated while it received (part of <see cref="ProcessorResult.AllocatedBytes"/>).</summary>
    public long AllocatedBytes { get; init; }
}

/// <summary>What a run measured.</summary>
public sealed class ProcessorResult
{
    public required ProcessorOptions Options { get; init; }
    public TimeSpan Elapsed { get; init; }
    public bool Interrupted { get; init; }
    /// <summary>
    /// Managed bytes the packet path's threads (every queue and the worker) allocated while the queues ran, each
    /// counted exactly on its own thread.
    /// </summary>
    public long AllocatedBytes { get; init; }

    /// <summary>Of <see cref="AllocatedBytes"/>, the worker thread's (the stack freeing passed packets).</summary>
    public long WorkerAllocatedBytes { get; init; }
    /// <summary>Gen-0 garbage collections while the queues ran.</summary>
    public int Gen0Collections { get; init; }
    public required IReadOnlyList<QueueResult> Queues { get; init; }

    public long RxPackets => Queues.Sum(q => q.RxPackets);
    public long RxBytes => Queues.Sum(q => q.RxBytes);
    public long Matched => Queues.Sum(q => q.Matched);
    public long InFlight => Queues.Sum(q => q.InFlight);
    /// <summary>Pages taken from the pools to post as RX buffers.</summary>
    public long RxPages => Queues.Sum(q => q.RxPages);
    /// <summary>Pages the RX path used per received frame: about 1, 1/2 or 1/4 with whole, half or quarter pages.</summary>
    public double PagesPerFrame => RxPackets > 0 ? (double)RxPages / RxPackets : 0;
    /// <summary>Frames the kernel dropped before the programs saw them (see <see cref="QueueResult.KernelDrops"/>).</summary>
    public long KernelDrops => Queues.Sum(q => q.KernelDrops);
    public long Drops => Queues.Sum(q => q.Drop + q.Aborted + q.RedirectErrors + q.PassBacklogDrops + q.TxErrors);
    public double Mpps => Elapsed.TotalSeconds > 0 ? RxPackets / Elapsed.TotalSeconds / 1e6 : 0;
    public double Gbps => Elapsed.TotalSeconds > 0 ? RxBytes * 8 / Elapsed.TotalSeconds / 1e9 : 0;
}

/// <summary>A once-a-second sample for the progress line.</summary>
public readonly record struct ProgressSample(TimeSpan Elapsed, double Mpps, double Gbps, long RxPackets, long Drops, long InFlight, long Matched);
