using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// The native layer against the allocator it replaces. Every method handles 64 pages per invoke and says so with
/// <see cref="BatchSize"/> as <c>OperationsPerInvoke</c>, so each row is per page and the ratios compare pages.
/// </summary>
[MemoryDiagnoser]
public unsafe class NativeBenchmarks
{
    private const int BatchSize = 64;

    private readonly void*[] _blocks = new void*[BatchSize];
    private readonly NetMemRef[] _pages = new NetMemRef[BatchSize];
    private readonly nint[] _addresses = new nint[BatchSize];
    private PageProvider _provider = null!;
    private PageProvider _lookupProvider = null!;
    private NetMemRef[] _lookupPages = [];

    [GlobalSetup]
    public void Setup()
    {
        _provider = new PageProvider();
        // Warm the provider so the measured cycle never creates a region.
        _provider.GiveBulk(_pages.AsSpan(0, _provider.TakeBulk(_pages)));

        // Fill one region and spread the addresses over its pages, each at a different offset in its page.
        _lookupProvider = new PageProvider();
        NetMemRef first = _lookupProvider.Take();
        PageRegion region = PageRegion.FromAddress(first.Address)!;
        _lookupPages = new NetMemRef[region.UsablePages];
        _lookupPages[0] = first;
        _lookupProvider.TakeBulk(_lookupPages.AsSpan(1));
        for (int i = 0; i < BatchSize; i++)
        {
            NetMemRef page = _lookupPages[i * 37 % _lookupPages.Length];
            _addresses[i] = (nint)page.Address + (i * 67 % PageConstants.PageSize);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _lookupProvider.GiveBulk(_lookupPages);
        _lookupProvider.Dispose();
        _provider.Dispose();
    }

    /// <summary>64 pages from the C runtime allocator and back: <c>NativeMemory.AlignedAlloc</c>/<c>AlignedFree</c>.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = BatchSize)]
    public nint AlignedAllocFree64()
    {
        void*[] blocks = _blocks;
        for (int i = 0; i < blocks.Length; i++)
            blocks[i] = NativeMemory.AlignedAlloc(PageConstants.PageSize, PageConstants.PageSize);
        nint sum = 0;
        for (int i = 0; i < blocks.Length; i++)
        {
            sum ^= (nint)blocks[i];
            NativeMemory.AlignedFree(blocks[i]);
        }
        return sum;
    }

    /// <summary>64 pages taken from a provider in one call and given back in one call.</summary>
    [Benchmark(OperationsPerInvoke = BatchSize)]
    public int ProviderBulkTakeGive64()
    {
        int taken = _provider.TakeBulk(_pages);
        _provider.GiveBulk(_pages.AsSpan(0, taken));
        return taken;
    }

    /// <summary>64 addresses spread over a region resolved to their descriptors (the kernel's <c>virt_to_page</c>).</summary>
    [Benchmark(OperationsPerInvoke = BatchSize)]
    public nint FromAddress()
    {
        nint[] addresses = _addresses;
        nint sum = 0;
        for (int i = 0; i < addresses.Length; i++)
            sum ^= (nint)NetMemRef.FromAddress(addresses[i]).Descriptor;
        return sum;
    }
}
