namespace UnmanagedPool;

/// <summary>How much checking a pool in debug mode does (as Netty's leak detector levels).</summary>
public enum PagePoolDebugLevel
{
    /// <summary>No debug checks.</summary>
    Off = 0,

    /// <summary>
    /// Pages are poisoned when put back and the poison is checked when they are handed out again; one allocation
    /// in <see cref="PagePool.LeakSampleInterval"/> is tracked for leaks with its allocation stack.
    /// </summary>
    Simple = 1,

    /// <summary>
    /// As <see cref="Simple"/>, but every allocation is tracked with its stack and every put records its stack, so
    /// a write after put names where the page was put.
    /// </summary>
    Paranoid = 2,
}
