using UnmanagedPool.Native;
using UnmanagedPool.Stress;

namespace UnmanagedPool.Tests.Stress;

/// <summary>Forwards everything to the real pool; the broken pools below override one behaviour.</summary>
internal class ForwardingPool(StressPoolContext context) : IStressPool
{
    protected readonly PagePoolStressPool Inner = new(context);

    public int BufferSize => Inner.BufferSize;
    public virtual NetMemRef Alloc() => Inner.Alloc();
    public void Put(NetMemRef page, bool allowDirect) => Inner.Put(page, allowDirect);
    public NetMemRef AllocDirect() => Inner.AllocDirect();
    public void RecycleDirect(NetMemRef page) => Inner.RecycleDirect(page);
    public virtual int AllocBulk(Span<NetMemRef> pages) => Inner.AllocBulk(pages);
    public void PutBulk(ReadOnlySpan<NetMemRef> pages) => Inner.PutBulk(pages);
    public NetMemRef AllocFrag(int size, out int offset) => Inner.AllocFrag(size, out offset);
    public PagePoolStats GetStats() => Inner.GetStats();
    public long InFlight => Inner.InFlight;
    public bool IsFreed => Inner.IsFreed;
    public void Dispose() => Inner.Dispose();
}

/// <summary>Every tenth bulk allocation hands its first page out twice (the second copy replaces a page it gives back).</summary>
internal sealed class DoubleHandOutPool(StressPoolContext context) : ForwardingPool(context)
{
    private int _bulks;

    public override int AllocBulk(Span<NetMemRef> pages)
    {
        int n = Inner.AllocBulk(pages);
        if (n >= 2 && ++_bulks % 10 == 0)
        {
            Inner.Put(pages[1], allowDirect: false);
            pages[1] = pages[0];
        }
        return n;
    }
}

/// <summary>Now and then scribbles over the first bytes of the page it handed out before, which its holder still has.</summary>
internal sealed unsafe class CookieCorruptingPool(StressPoolContext context) : ForwardingPool(context)
{
    private nint _last;
    private int _allocs;

    public override NetMemRef Alloc()
    {
        NetMemRef page = Inner.Alloc();
        if (page.IsNull)
            return page;
        nint previous = Interlocked.Exchange(ref _last, (nint)page.Address);
        if (previous != 0 && Interlocked.Increment(ref _allocs) % 100 == 0)
            *(ulong*)previous = 0xBADC0FFEE0DDF00DUL;
        return page;
    }
}
