namespace PacketProcessor.Programs;

/// <summary>The programs the processor can run.</summary>
public enum ProgramKind
{
    /// <summary><c>drop</c>: every frame back to the pool (XDP_DROP).</summary>
    Drop,

    /// <summary><c>l2fwd</c>: swap MAC addresses and transmit on the same queue (XDP_TX).</summary>
    L2Fwd,

    /// <summary><c>udp-filter</c>: pass UDP to one port, drop the rest.</summary>
    UdpFilter,

    /// <summary><c>redirect</c>: to the next queue's thread, which transmits (XDP_REDIRECT).</summary>
    Redirect,

    /// <summary><c>count</c>: pass every frame into a packet that a worker thread frees; count UDP to a port.</summary>
    Count,
}

/// <summary>Names of <see cref="ProgramKind"/> on the command line.</summary>
public static class ProgramNames
{
    /// <summary>Every accepted name, in the order of <see cref="ProgramKind"/>.</summary>
    public static readonly string[] All = ["drop", "l2fwd", "udp-filter", "redirect", "count"];

    /// <summary>The kind for a name, or false when the name is unknown.</summary>
    public static bool TryParse(string? name, out ProgramKind kind)
    {
        int i = Array.IndexOf(All, name?.Trim().ToLowerInvariant());
        kind = (ProgramKind)Math.Max(i, 0);
        return i >= 0;
    }

    /// <summary>The command-line name of a kind.</summary>
    public static string Name(ProgramKind kind) => All[(int)kind];
}
