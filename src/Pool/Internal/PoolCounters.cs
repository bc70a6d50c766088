using System.Runtime.InteropServices;

namespace UnmanagedPool.Internal;

/// <summary>
/// One cache's share of the pool's counters. Written with plain increments by the single owner of that cache
/// (the consumer thread for the alloc cache, the thread that owns a per-CPU cache), summed when read.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct PoolCounters
{
    public long Fast;
    public long Slow;
    public long SlowHighOrder;
    public long Empty;
    public long Refill;
    public long Waive;
    public long Cached;
    public long CacheFull;
    public long Ring;
    public long RingFull;
    public long ReleasedRefcnt;
    public long Hold;

    public void AddTo(ref PoolCounters sum)
    {
        sum.Fast += Fast;
        sum.Slow += Slow;
        sum.SlowHighOrder += SlowHighOrder;
        sum.Empty += Empty;
        sum.Refill += Refill;
        sum.Waive += Waive;
        sum.Cached += Cached;
        sum.CacheFull += CacheFull;
        sum.Ring += Ring;
        sum.RingFull += RingFull;
        sum.ReleasedRefcnt += ReleasedRefcnt;
        sum.Hold += Hold;
    }
}
