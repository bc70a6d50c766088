namespace PacketProcessor;

/// <summary>What an XDP program decides for one frame (the kernel's <c>enum xdp_action</c>).</summary>
public enum Verdict
{
    /// <summary><c>XDP_ABORTED</c>: the frame is malformed; dropped and counted apart from ordinary drops.</summary>
    Aborted = 0,

    /// <summary><c>XDP_DROP</c>: the buffer goes straight back to the queue's pool.</summary>
    Drop = 1,

    /// <summary><c>XDP_PASS</c>: the frame becomes a <see cref="UnmanagedPool.Packet"/> for the stack (a worker thread frees it).</summary>
    Pass = 2,

    /// <summary><c>XDP_TX</c>: the frame leaves through the same queue's TX ring.</summary>
    Tx = 3,

    /// <summary><c>XDP_REDIRECT</c>: the frame goes to another queue's thread, which transmits it.</summary>
    Redirect = 4,
}
