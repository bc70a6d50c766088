using PacketProcessor.Frames;

namespace PacketProcessor.Programs;

/// <summary><c>drop</c>: every frame is dropped (a runt shorter than an Ethernet header counts as aborted).</summary>
public struct DropProgram : IXdpProgram
{
    /// <inheritdoc />
    public readonly Verdict Run(Span<byte> frame, ref XdpContext ctx) =>
        frame.Length < FrameParser.EthernetHeaderLength ? Verdict.Aborted : Verdict.Drop;

    /// <inheritdoc />
    public readonly long Matched => 0;
}
