using PacketProcessor.Frames;

namespace PacketProcessor.Programs;

/// <summary><c>udp-filter --port N</c>: passes IPv4/UDP frames to port N, drops every other frame, aborts malformed ones.</summary>
public struct UdpFilterProgram(ushort port) : IXdpProgram
{
    private long _matched;

    /// <summary>The UDP destination port that passes.</summary>
    public readonly ushort Port => port;

    /// <inheritdoc />
    public Verdict Run(Span<byte> frame, ref XdpContext ctx)
    {
        ParseResult r = FrameParser.ParseUdp(frame, ctx.GetBuffLength(frame.Length), out ushort dst);
        if (r == ParseResult.Malformed)
            return Verdict.Aborted;
        if (r == ParseResult.Udp && dst == port)
        {
            _matched++;
            return Verdict.Pass;
        }
        return Verdict.Drop;
    }

    /// <inheritdoc />
    public readonly long Matched => _matched;
}
