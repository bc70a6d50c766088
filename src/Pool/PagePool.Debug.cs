using UnmanagedPool.Native;

namespace UnmanagedPool;

// Debug-mode hooks. Each call site is guarded by the pool's readonly debug flag, so with debug mode off they
// cost one predictable branch.
public sealed unsafe partial class PagePool
{
    private partial void DebugOnAlloc(NetMem* d) { }

    private partial void DebugOnPut(NetMem* d) { }

    private partial void DebugOnHold(NetMem* d) { }

    private partial void DebugOnRelease(NetMem* d) { }

    private partial string DescribeLeaks() => string.Empty;
}
