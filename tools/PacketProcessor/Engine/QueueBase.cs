using System.Buffers;
using PacketProcessor.Drivers;
using UnmanagedPool;
using UnmanagedPool.Native;

namespace PacketProcessor.Engine;

/// <summary>The parts of an RX queue the processor, the worker thread and other queues see, whatever its buffer and program types.</summary>
internal abstract class QueueBase
{
    /// <summary>Buffers moved per refill and frames per poll (the NAPI budget).</summary>
    public const int RefillBatch = 64;

    /// <summary>Capacity of each pool's recycling ring (arbitrary: room for the RX ring and the pass backlog's returns).</summary>
    public const int PoolRingSize = 4096;

    /// <summary>Frames the stack's backlog holds per queue (the kernel's netdev_max_backlog is 1000 per CPU).</summary>
    public const int PassBacklog = 4096;

    /// <summary>Frames each queue's inbox from each other queue holds.</summary>
    public const int RedirectInbox = 1024;

    protected QueueBase(int index, int queueCount, NicQueue nic)
    {
        Index = index;
        Nic = nic;
        Inboxes = new SpscRing<RedirectItem>[queueCount];
        for (int i = 0; i < queueCount; i++)
            Inboxes[i] = new SpscRing<RedirectItem>(RedirectInbox);
    }

    public int Index { get; }

    /// <summary>RX descriptors in the queue's ring.</summary>
    public int RingSize { get; protected init; }

    /// <summary>Whether redirected page-pool frames travel as <see cref="UnmanagedPool.XdpFrame"/>s (else as bare pages).</summary>
    public bool RedirectAsXdpFrames { get; init; } = true;

    public NicQueue Nic { get; }

    /// <summary>RX buffers cut from each page: 1 (whole pages), 2 or 4 (pages the queue splits itself, as mlx5).</summary>
    public int RxPiecesPerPage { get; init; } = 1;

    /// <summary>
    /// The IP MTU, or 0 for none. With an MTU the queue receives frames up to <c>Mtu + 18</c> bytes, those longer
    /// than one buffer as multi-buffer XDP buffers (head plus fragments) from the NIC's
    /// <see cref="NicQueue.ReceiveMultiBuffer"/>; every frame then runs through an <see cref="UnmanagedPool.XdpBuff"/>.
    /// </summary>
    public int Mtu { get; init; }

    /// <summary>
    /// Microseconds a queue on a real interface keeps polling an empty ring before it sleeps in <c>poll(2)</c>
    /// (the kernel's <c>net.core.busy_poll</c>); 0 sleeps at once. A sleeping receiver is woken by the kernel on
    /// the CPU that delivered the frame, which on a veth is the sender's.
    /// </summary>
    public int BusyPollMicroseconds { get; init; }

    /// <summary>Whether the queue's pool maps its pages for the device (and syncs each received frame for the CPU).</summary>
    public bool DmaMap { get; init; }

    /// <summary>The device's mapper when <see cref="DmaMap"/> is set; null for an identity mapper.</summary>
    public UnmanagedPool.Native.IDmaMapper? DmaMapper { get; init; }

    public QueueCounters Counters { get; } = new();

    /// <summary>Managed bytes this queue's thread allocated while it received (written by that thread when it stops).</summary>
    public long AllocatedBytes { get; protected set; }

    /// <summary>The queue's page pool (created on the queue's thread); null for array buffers.</summary>
    public PagePool? Pool { get; set; }

    /// <summary>Frames passed to the stack: this queue produces, the worker consumes.</summary>
    public SpscRing<PassItem> PassRing { get; } = new(PassBacklog);

    /// <summary>Freed packet objects: the worker produces, this queue consumes.</summary>
    public SpscRing<Packet> PacketReturn { get; } = new(PassBacklog);

    /// <summary>Redirected frames, one inbox per sending queue (index = sender): the sender produces, this queue consumes.</summary>
    public SpscRing<RedirectItem>[] Inboxes { get; }

    /// <summary>Arrays rented (array buffers; queue thread only).</summary>
    public long ArraysRented;

    /// <summary>Arrays of this queue returned by its own thread.</summary>
    public long ArraysReturnedHere;

    /// <summary>Arrays of this queue returned by other threads (Interlocked).</summary>
    public long ArraysReturnedElsewhere;

    /// <summary>Frames the program matched.</summary>
    public abstract long Matched { get; }

    /// <summary>Pool statistics after the pool was released (page-pool buffers).</summary>
    public PagePoolStats? FinalPoolStats { get; set; }

    /// <summary>Whether the pool reached its freed state at exit (nothing in flight).</summary>
    public bool PoolFreed { get; set; }

    /// <summary>Buffers taken and not given back: the pool's inflight, or rented minus returned arrays.</summary>
    public long InFlight => Pool is { } pool ? pool.InFlight
        : ArraysRented - ArraysReturnedHere - Volatile.Read(ref ArraysReturnedElsewhere);

    /// <summary>
    /// Before a thread's measured window: the one-time state the pool keeps for each thread that uses it (created
    /// on the thread's first alloc or put through the pool, the kernel's per-CPU variables having no such first
    /// use) is created now, by one page taken and put back.
    /// </summary>
    public static void TouchPoolThreadState(PagePool pool)
    {
        NetMemRef page = pool.AllocPage();
        if (!page.IsNull)
            pool.PutPage(page);
    }

    /// <summary>
    /// Opened by the processor once every queue is ready and a blocking collection has emptied every thread's
    /// allocation context; the queue's measured window starts after it. Null: no wait (tests driving a queue).
    /// </summary>
    public StartGate? Gate { get; set; }

    /// <summary>The queue's thread: polls until <paramref name="stop"/>, then shuts down in step with the others.</summary>
    public abstract void Run(QueueBase[] queues, Func<bool> stop, Barrier phases, CountdownEvent ready);

    /// <summary>The worker thread: frees what this queue passed to the stack. Returns how many.</summary>
    public int FreePassed(int max)
    {
        int n = 0;
        int returnedArrays = 0;
        while (n < max && PassRing.TryRead(out PassItem item))
        {
            if (item.Packet is { } packet)
            {
                // The stack is done with the packet: its page goes back to the queue's pool from this thread
                // (per-CPU cache and ring), and the packet object goes back to the queue.
                packet.Free();
                PacketReturn.TryWrite(packet);
            }
            else
            {
                ArrayPool<byte>.Shared.Return(item.Array!);
                returnedArrays++;
            }
            n++;
        }
        if (n > 0)
        {
            PassRing.Release();
            PacketReturn.Publish();
            if (returnedArrays > 0)
                // Interlocked: other queues' threads count returns of this queue's arrays too.
                Interlocked.Add(ref ArraysReturnedElsewhere, returnedArrays);
        }
        return n;
    }
}
