using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// The return of a TX completion's burst of 32 redirected frames on one thread, with no cache line crossing
/// between cores: what <see cref="Xdp.ReturnFrameBulk"/> adds to <see cref="PagePool.PutPages(ReadOnlySpan{NetMemRef})"/>
/// of the same pages. Each operation takes a page, writes an <see cref="XdpFrame"/> descriptor into its headroom
/// (the baseline writes one word there instead) and gives it back. Baseline: 32 pages put with one PutPages.
/// </summary>
[MemoryDiagnoser]
public unsafe class XdpReturnBenchmarks
{
    private const int N = 32;
    private PagePool _pool = null!;
    private PagePoolConsumer _consumer;
    private XdpMemInfo _mem;
    private readonly NetMemRef[] _pages = new NetMemRef[N];
    private readonly XdpFrame[] _frames = new XdpFrame[N];

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(new PagePoolOptions { PoolSize = 4096, Name = "bench-xdp-return" });
        _consumer = _pool.BindConsumer();
        _mem = XdpMemInfo.ForPagePool(_pool);
        // Warm the pool so that no measured iteration reaches the provider.
        for (int i = 0; i < 4; i++)
        {
            _consumer.AllocPages(_pages);
            _pool.PutPages(_pages);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    /// <summary>32 pages taken, one word written at the start of each, put back with one PutPages.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = N)]
    public void PutPages()
    {
        NetMemRef[] pages = _pages;
        _consumer.AllocPages(pages);
        for (int i = 0; i < pages.Length; i++)
            *(long*)pages[i].Address = i;
        _pool.PutPages(pages);
    }

    /// <summary>32 pages taken, each converted to a frame, the 32 frames returned with one ReturnFrameBulk.</summary>
    [Benchmark(OperationsPerInvoke = N)]
    public void ReturnFrameBulk()
    {
        NetMemRef[] pages = _pages;
        XdpFrame[] frames = _frames;
        _consumer.AllocPages(pages);
        for (int i = 0; i < pages.Length; i++)
            frames[i] = ToFrame(pages[i]);
        Xdp.ReturnFrameBulk(frames);
    }

    /// <summary>32 pages taken, each converted to a frame and returned on its own with ReturnFrame.</summary>
    [Benchmark(OperationsPerInvoke = N)]
    public void ReturnFrameEach()
    {
        NetMemRef[] pages = _pages;
        _consumer.AllocPages(pages);
        for (int i = 0; i < pages.Length; i++)
            Xdp.ReturnFrame(ToFrame(pages[i]));
    }

    private XdpFrame ToFrame(NetMemRef page)
    {
        var xdp = new XdpBuff();
        xdp.Init(PageConstants.PageSize, _mem);
        xdp.Prepare(page.Address, Xdp.PacketHeadroom, 64, metaValid: false);
        return xdp.ToFrame();
    }
}
