using PacketProcessor.Frames;
using PacketProcessor.Programs;

namespace PacketProcessor.Engine;

/// <summary>Where frames come from.</summary>
public enum DriverKind
{
    /// <summary>The in-process NIC model (no privileges needed).</summary>
    Synthetic,

    /// <summary>AF_PACKET sockets on a real interface (root or CAP_NET_RAW).</summary>
    AfPacket,

    /// <summary>AF_XDP sockets on a real interface, the pools' pages a shared UMEM (root or CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF).</summary>
    AfXdp,
}

/// <summary>How the afxdp driver binds its sockets and attaches its program.</summary>
public enum AfXdpMode
{
    /// <summary>Zero-copy where the driver supports it, copy otherwise; the driver's XDP hook where it has one.</summary>
    Auto,

    /// <summary>Copy mode (any interface).</summary>
    Copy,

    /// <summary>Zero-copy; fails on an interface whose driver lacks it.</summary>
    ZeroCopy,

    /// <summary>Copy mode with the program on the generic XDP hook (any interface, slowest).</summary>
    Generic,
}

/// <summary>Where buffers come from.</summary>
public enum BufferPoolKind
{
    /// <summary>One <c>PagePool</c> per queue.</summary>
    PagePool,

    /// <summary><c>ArrayPool&lt;byte&gt;.Shared</c>, for comparison.</summary>
    ArrayPool,
}

/// <summary>What each RX descriptor holds.</summary>
public enum RxBufferKind
{
    /// <summary>A whole page from the pool.</summary>
    Page,

    /// <summary>Half a page (2048 B): the queue splits each page in two with <c>PagePool.FragmentPage</c>.</summary>
    Half,

    /// <summary>A quarter of a page (1024 B): four pieces per page.</summary>
    Quarter,
}

/// <summary>Helpers for <see cref="RxBufferKind"/>.</summary>
public static class RxBufferKindExtensions
{
    /// <summary>RX buffers cut from one page.</summary>
    public static int PiecesPerPage(this RxBufferKind kind) => kind switch
    {
        RxBufferKind.Half => 2,
        RxBufferKind.Quarter => 4,
        _ => 1,
    };

    /// <summary>The command-line name.</summary>
    public static string Name(this RxBufferKind kind) => kind switch
    {
        RxBufferKind.Half => "half",
        RxBufferKind.Quarter => "quarter",
        _ => "page",
    };
}

/// <summary>Settings of one run.</summary>
public sealed class ProcessorOptions
{
    public DriverKind Driver { get; set; } = DriverKind.Synthetic;
    public string? Interface { get; set; }
    public int Queues { get; set; } = 1;
    public ProgramKind Program { get; set; } = ProgramKind.Drop;
    /// <summary>UDP port for udp-filter (required there) and count (0 counts every UDP frame).</summary>
    public ushort Port { get; set; }
    public TimeSpan Duration { get; set; } = TimeSpan.FromSeconds(10);
    public SizeMix Mix { get; set; } = SizeMix.Fixed(64);
    /// <summary>Malformed frames the synthetic NIC mixes in, per mille.</summary>
    public int MalformedPerMille { get; set; }
    public BufferPoolKind Pool { get; set; } = BufferPoolKind.PagePool;
    public int RingSize { get; set; } = 512;
    /// <summary>
    /// Redirected page-pool frames travel as XdpFrames (descriptor in the headroom, returned with
    /// Xdp.ReturnFrameBulk), as the kernel's do; false sends bare pages returned with PagePool.PutPages.
    /// </summary>
    public bool XdpFrames { get; set; } = true;
    /// <summary>
    /// What each RX descriptor holds: a whole page, or a half or quarter of a page the queue split itself with
    /// <c>PagePool.FragmentPage</c>, the remainder drained with <c>UnrefPage</c> (mlx5's page splitting).
    /// </summary>
    public RxBufferKind RxBuffer { get; set; } = RxBufferKind.Page;
    /// <summary>The pools map their pages for the device (an identity mapper) and each received frame is synced for the CPU.</summary>
    public bool DmaMap { get; set; }

    /// <summary>
    /// The IP MTU (68..9000), or null for none: with an MTU, frames up to <c>Mtu + 18</c> bytes are received, those
    /// longer than one RX buffer as multi-buffer XDP buffers (a head plus page fragments, the kernel's XDP
    /// multi-buffer as mvneta receives it), and longer frames count as aborted. Synthetic and afpacket drivers
    /// (afpacket: at most the interface's MTU), page-pool buffers only.
    /// </summary>
    public int? Mtu { get; set; }

    /// <summary>Smallest IP MTU (the kernel's IPv4 minimum).</summary>
    public const int MinMtu = 68;

    /// <summary>Largest IP MTU.</summary>
    public const int MaxMtu = 9000;

    /// <summary>afxdp: socket bind mode and program hook.</summary>
    public AfXdpMode XdpMode { get; set; } = AfXdpMode.Auto;

    /// <summary>
    /// afxdp: entries in each socket's fill, completion, RX and TX rings (a power of two). A fill ring of 2048
    /// holds about 2 ms at 1 Mpps; a receiver preempted longer loses frames, reported as kernel drops.
    /// </summary>
    public int XdpRingSize { get; set; } = 2048;

    /// <summary>
    /// afpacket and afxdp: microseconds a queue keeps polling an empty ring before it sleeps (the kernel's
    /// <c>net.core.busy_poll</c>); 0, the default, sleeps at once. On a veth the wake-up of a sleeping receiver
    /// runs on the sender's CPU, so busy polling a pinned receiver lets the sender go faster.
    /// </summary>
    public int BusyPollMicroseconds { get; set; }

    /// <summary>Largest <see cref="BusyPollMicroseconds"/>: one second.</summary>
    public const int MaxBusyPollMicroseconds = 1_000_000;

    /// <summary>Checks the combination; returns a message for the user, or null.</summary>
    public string? Validate()
    {
        if (Queues is < 1 or > 64)
            return $"--queues must be 1..64 (got {Queues}).";
        if (Duration <= TimeSpan.Zero)
            return "--duration must be positive.";
        if (RingSize < 64 || (RingSize & (RingSize - 1)) != 0 || RingSize > 16384)
            return $"--ring must be a power of two in 64..16384 (got {RingSize}).";
        if (Program == ProgramKind.UdpFilter && Port == 0)
            return "udp-filter needs --port N (1..65535).";
        if (RxBuffer != RxBufferKind.Page && Pool != BufferPoolKind.PagePool)
            return "--rx-buffer half|quarter needs --pool pagepool (pages split with FragmentPage).";
        if (DmaMap && Pool != BufferPoolKind.PagePool)
            return "--dma-map needs --pool pagepool.";
        if (Driver == DriverKind.AfPacket && string.IsNullOrWhiteSpace(Interface))
            return "--driver afpacket needs --interface NAME.";
        if (Driver == DriverKind.AfXdp && string.IsNullOrWhiteSpace(Interface))
            return "--driver afxdp needs --interface NAME.";
        if (Driver == DriverKind.AfXdp && Pool != BufferPoolKind.PagePool)
            return "--driver afxdp needs --pool pagepool: its buffers are UMEM pages.";
        if (Mtu is int mtu)
        {
            if (mtu < MinMtu || mtu > MaxMtu)
                return $"--mtu must be {MinMtu}..{MaxMtu} (got {mtu}).";
            if (Pool != BufferPoolKind.PagePool)
                return "--mtu needs --pool pagepool: multi-buffer frames carry page fragments.";
            if (Driver == DriverKind.AfXdp)
                return "--mtu is supported with --driver synthetic and afpacket (an AF_XDP frame is one UMEM chunk).";
            if (!XdpFrames)
                return "--mtu needs --xdp-frames true: a multi-buffer frame travels as an XdpFrame carrying its fragments.";
        }
        if (BusyPollMicroseconds is < 0 or > MaxBusyPollMicroseconds)
            return $"--busy-poll must be 0..{MaxBusyPollMicroseconds} microseconds (got {BusyPollMicroseconds}).";
        if (XdpRingSize < 64 || (XdpRingSize & (XdpRingSize - 1)) != 0 || XdpRingSize > 16384)
            return $"--xdp-ring must be a power of two in 64..16384 (got {XdpRingSize}).";
        return null;
    }
}
