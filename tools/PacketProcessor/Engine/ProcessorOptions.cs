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
}

/// <summary>Where buffers come from.</summary>
public enum BufferPoolKind
{
    /// <summary>One <c>PagePool</c> per queue.</summary>
    PagePool,

    /// <summary><c>ArrayPool&lt;byte&gt;.Shared</c>, for comparison.</summary>
    ArrayPool,
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
        if (Driver == DriverKind.AfPacket && string.IsNullOrWhiteSpace(Interface))
            return "--driver afpacket needs --interface NAME.";
        return null;
    }
}
