using System.Buffers;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// Fragments against the page fast path, on the consumer handle: per piece (or per packet) costs and allocation.
/// <c>dotnet run -c Release --project perf/UnmanagedPool.Benchmarks -- --filter '*FragBenchmarks*' --job short</c>
/// </summary>
[MemoryDiagnoser]
public unsafe class FragBenchmarks
{
    private const int Ops = 4096;

    private PagePool _pool = null!;
    private PagePoolConsumer _consumer;
    private Packet _packet = null!;
    private PagePoolMemoryPool _memoryPool = null!;
    private long* _count;

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(new PagePoolOptions { PoolSize = 4096, DebugMode = false });
        _consumer = _pool.BindConsumer();
        _packet = new Packet();
        _memoryPool = new PagePoolMemoryPool(_pool);
        // A cache line of its own, as a page descriptor's count.
        _count = (long*)NativeMemory.AlignedAlloc(64, 64);
        *_count = long.MaxValue;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _memoryPool.Dispose();
        _pool.Dispose();
        NativeMemory.AlignedFree(_count);
    }

    /// <summary>One page from the alloc cache and straight back (alloc + recycle_direct).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Ops)]
    public void PageFastPath()
    {
        PagePoolConsumer c = _consumer;
        for (int i = 0; i < Ops; i++)
            c.RecycleDirect(c.AllocPage());
    }

    /// <summary>A 2048-byte piece (two per page) and its put.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void Frag2048()
    {
        PagePoolConsumer c = _consumer;
        for (int i = 0; i < Ops; i++)
            c.PutPage(c.AllocFrag(2048, out _));
    }

    /// <summary>A 256-byte piece (sixteen per page) and its put.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void Frag256()
    {
        PagePoolConsumer c = _consumer;
        for (int i = 0; i < Ops; i++)
            c.PutPage(c.AllocFrag(256, out _));
    }

    /// <summary>References a driver sets on a page it splits itself: mlx5's MLX5E_PAGECNT_BIAS_MAX (PAGE_SIZE / 64).</summary>
    private const long SplitBias = 4096 / 64;

    /// <summary>
    /// The driver-split shape, 2 pieces per page (per piece), as mlx5's XDP_DROP: a page from the alloc cache,
    /// <c>FragmentPage</c> once with the bias, both pieces received and dropped back to the driver (their references
    /// stay in the bias), then the drain: <c>UnrefPage</c> of the whole bias, and <c>PutUnrefedPage</c> of the page
    /// it left unreferenced, direct.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void DriverSplit2() => DriverSplitDrop(2);

    /// <summary>The driver-split shape, 4 pieces per page (per piece), as <see cref="DriverSplit2"/>.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void DriverSplit4() => DriverSplitDrop(4);

    /// <summary>
    /// The driver-split shape, 2 pieces per page (per piece), with each piece handed to its user (as XDP_PASS or
    /// a redirect): <c>FragmentPage</c>, the drain of the pieces never handed out with <c>UnrefPage</c>, then one
    /// put per piece (the last recycles the page).
    /// </summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void DriverSplit2Put() => DriverSplitPut(2);

    /// <summary>The driver-split shape with puts, 4 pieces per page (per piece).</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void DriverSplit4Put() => DriverSplitPut(4);

    private void DriverSplitDrop(int pieces)
    {
        PagePoolConsumer c = _consumer;
        PagePool pool = _pool;
        for (int i = 0; i < Ops; i += pieces)
        {
            NetMemRef page = c.AllocPage();
            pool.FragmentPage(page, SplitBias);
            // Every piece came back to the driver: drop the whole bias, and the page whose last reference that was
            // goes back (page_pool_put_unrefed_netmem).
            if (pool.UnrefPage(page, SplitBias) == 0)
                c.PutUnrefedPage(page, -1, true);
        }
    }

    private void DriverSplitPut(int pieces)
    {
        PagePoolConsumer c = _consumer;
        PagePool pool = _pool;
        for (int i = 0; i < Ops; i += pieces)
        {
            NetMemRef page = c.AllocPage();
            pool.FragmentPage(page, SplitBias);
            // Every piece is out with a user: drop the rest of the bias; the users' puts recycle the page.
            pool.UnrefPage(page, SplitBias - pieces);
            for (int k = 0; k < pieces; k++)
                c.PutPage(page);
        }
    }

    /// <summary>
    /// The cost the shapes with puts cannot shed, on its own: one atomic subtraction (<c>lock xadd</c>) on a count in
    /// native memory per operation, as each reference dropped on a page other holders still reference costs (the
    /// kernel's <c>atomic_long_sub_return</c> in <c>page_pool_unref_netmem</c>). A split page's drain and every put
    /// but the last take one each: one per piece.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public long AtomicUnrefAlone()
    {
        long* count = _count;
        long left = 0;
        for (int i = 0; i < Ops; i++)
            left = Interlocked.Add(ref *count, -1);
        return left;
    }

    /// <summary>
    /// The floor of <see cref="DriverSplit2Put"/>: the drop shape (<see cref="DriverSplit2"/>) plus the one atomic unref
    /// per piece that the shape with puts needs (the drain while pieces are out, and every put but the last), made
    /// here with no pool call: <c>FragmentPage</c> with the bias plus one reference per piece, one
    /// <c>Interlocked.Decrement</c> of the page's own <c>pp_ref_count</c> per piece, then the drain of the whole bias
    /// (no atomic) and <c>PutUnrefedPage</c>. What <see cref="DriverSplit2Put"/> costs above this is the pool's.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void DriverSplit2AtomicFloor() => DriverSplitDropPlusAtomics(2);

    /// <summary>The floor of <see cref="DriverSplit4Put"/>, as <see cref="DriverSplit2AtomicFloor"/>.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void DriverSplit4AtomicFloor() => DriverSplitDropPlusAtomics(4);

    private void DriverSplitDropPlusAtomics(int pieces)
    {
        PagePoolConsumer c = _consumer;
        PagePool pool = _pool;
        for (int i = 0; i < Ops; i += pieces)
        {
            NetMemRef page = c.AllocPage();
            pool.FragmentPage(page, SplitBias + pieces);
            // Interlocked: the atomic each piece's reference costs while other holders may drop theirs.
            for (int k = 0; k < pieces; k++)
                Interlocked.Decrement(ref page.Descriptor->PpRefCount);
            if (pool.UnrefPage(page, SplitBias) == 0)
                c.PutUnrefedPage(page, -1, true);
        }
    }

    /// <summary>A packet of three 1024-byte fragments built and freed (per packet).</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void Packet3Frags()
    {
        PagePoolConsumer c = _consumer;
        Packet p = _packet;
        for (int i = 0; i < Ops; i++)
        {
            p.PpRecycle = true;
            NetMemRef a = c.AllocFrag(1024, out int oa);
            p.AddFrag(a, oa, 1000);
            NetMemRef b = c.AllocFrag(1024, out int ob);
            p.AddFrag(b, ob, 1000);
            NetMemRef d = c.AllocFrag(1024, out int od);
            p.AddFrag(d, od, 1000);
            p.Free();
        }
    }

    /// <summary><see cref="PagePoolMemoryPool"/> Rent(2048) and Dispose.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void MemoryPoolRent2048()
    {
        MemoryPool<byte> mp = _memoryPool;
        for (int i = 0; i < Ops; i++)
            mp.Rent(2048).Dispose();
    }
}
