using PacketProcessor.Frames;

namespace PacketProcessor.Programs;

/// <summary>
/// <c>redirect</c>: every frame goes to the next queue's thread (queue i to i+1, the last to 0; a single queue to
/// itself), which transmits it and returns the page to the pool it came from.
/// </summary>
public struct RedirectProgram : IXdpProgram
{
    /// <inheritdoc />
    public readonly Verdict Run(Span<byte> frame, ref XdpContext ctx)
    {
        if (frame.Length < FrameParser.EthernetHeaderLength)
            return Verdict.Aborted;
        int next = ctx.IngressQueue + 1;
        ctx.RedirectQueue = next == ctx.QueueCount ? 0 : next;
        return Verdict.Redirect;
    }

    /// <inheritdoc />
    public readonly long Matched => 0;
}
