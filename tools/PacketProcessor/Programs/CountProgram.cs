using PacketProcessor.Frames;

namespace PacketProcessor.Programs;

/// <summary>
/// <c>count</c>: passes every well-formed frame (into a packet a worker thread frees later), counting IPv4/UDP
/// frames to <paramref name="port"/> (every UDP frame when the port is 0). Malformed frames are aborted.
/// </summary>
public struct CountProgram(ushort port) : IXdpProgram
{
    private long _matched;

    /// <summary>The UDP destination port counted, 0 for any.</summary>
    public readonly ushort Port => port;

    /// <inheritdoc />
    public Verdict Run(Span<byte> frame, ref XdpContext ctx)
    {
        ParseResult r = FrameParser.ParseUdp(frame, ctx.GetBuffLength(frame.Length), out ushort dst);
        if (r == ParseResult.Malformed)
            return Verdict.Aborted;
        if (r == ParseResult.Udp && (port == 0 || dst == port))
            _matched++;
        return Verdict.Pass;
    }

    /// <inheritdoc />
    public readonly long Matched => _matched;
}
