namespace PacketProcessor.Programs;

/// <summary>Per-frame context an XDP program reads and writes (the kernel's <c>xdp_md</c> plus the redirect target).</summary>
public struct XdpContext
{
    /// <summary>The queue the frame arrived on (the kernel's <c>rx_queue_index</c>).</summary>
    public int IngressQueue;

    /// <summary>Number of queues, for programs that pick a redirect target.</summary>
    public int QueueCount;

    /// <summary>Set by a program returning <see cref="Verdict.Redirect"/>: the queue whose thread transmits the frame.</summary>
    public int RedirectQueue;

    /// <summary>
    /// The whole frame's length, head plus fragments (the kernel's <c>xdp_get_buff_len</c>, what
    /// <c>bpf_xdp_get_buff_len</c> gives a program); the span a program gets is the head. Set by a queue with an
    /// MTU for every frame; 0 elsewhere, where the span is the whole frame.
    /// </summary>
    public int FrameLength;

    /// <summary>The frame's length: <see cref="FrameLength"/>, or the head's when that is not set.</summary>
    public readonly int GetBuffLength(int headLength) => FrameLength > headLength ? FrameLength : headLength;
}

/// <summary>
/// An XDP-style program: one call per frame, returning a verdict. Implementations are structs so that the queue's
/// poll loop, generic over the program type, calls them with no interface dispatch.
/// </summary>
public interface IXdpProgram
{
    /// <summary>Decides the fate of <paramref name="frame"/> (the frame's bytes, which the program may rewrite).</summary>
    Verdict Run(Span<byte> frame, ref XdpContext ctx);

    /// <summary>Frames this program matched (UDP to its port), or 0 for programs that match nothing.</summary>
    long Matched { get; }
}
