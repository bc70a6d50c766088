using PacketProcessor.Frames;

namespace PacketProcessor.Programs;

/// <summary><c>l2fwd</c>: swaps destination and source MAC addresses and transmits the frame on its own queue.</summary>
public struct L2FwdProgram : IXdpProgram
{
    /// <inheritdoc />
    public readonly Verdict Run(Span<byte> frame, ref XdpContext ctx)
    {
        if (frame.Length < FrameParser.EthernetHeaderLength)
            return Verdict.Aborted;
        FrameParser.SwapMacs(frame);
        return Verdict.Tx;
    }

    /// <inheritdoc />
    public readonly long Matched => 0;
}
