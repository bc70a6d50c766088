using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// One 4 KiB buffer got, written once and given back, 64 times per invocation, by the pools a .NET user would
/// otherwise pick. Baseline: PagePool through its consumer handle (alloc cache + recycle_direct).
/// </summary>
[MemoryDiagnoser]
public class AlternativesBenchmarks
{
    private const int N = 64;
    private const int BlockSize = 4096;
    private PagePool _pool = null!;
    private PagePoolConsumer _consumer;
    private readonly PinnedBlockQueue _pinned = new();

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PagePool(new PagePoolOptions { Name = "bench-alternatives" });
        _consumer = _pool.BindConsumer();
        _consumer.RecycleDirect(_consumer.AllocPage());
        _pinned.Return(_pinned.Rent());
        ArrayPool<byte>.Shared.Return(ArrayPool<byte>.Shared.Rent(BlockSize));
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = N)]
    public unsafe void PagePoolConsumer()
    {
        PagePoolConsumer c = _consumer;
        for (int i = 0; i < N; i++)
        {
            NetMemRef page = c.AllocPage();
            *page.Address = (byte)i;
            c.RecycleDirect(page);
        }
    }

    [Benchmark(OperationsPerInvoke = N)]
    public unsafe void PagePoolAnyThreadApi()
    {
        PagePool p = _pool;
        for (int i = 0; i < N; i++)
        {
            NetMemRef page = p.AllocPage();
            *page.Address = (byte)i;
            p.RecycleDirect(page);
        }
    }

    [Benchmark(OperationsPerInvoke = N)]
    public void ArrayPoolShared()
    {
        ArrayPool<byte> pool = ArrayPool<byte>.Shared;
        for (int i = 0; i < N; i++)
        {
            byte[] a = pool.Rent(BlockSize);
            a[0] = (byte)i;
            pool.Return(a);
        }
    }

    [Benchmark(OperationsPerInvoke = N)]
    public void MemoryPoolShared()
    {
        MemoryPool<byte> pool = MemoryPool<byte>.Shared;
        for (int i = 0; i < N; i++)
        {
            using IMemoryOwner<byte> owner = pool.Rent(BlockSize);
            owner.Memory.Span[0] = (byte)i;
        }
    }

    [Benchmark(OperationsPerInvoke = N)]
    public void PinnedBlockQueueKestrelStyle()
    {
        PinnedBlockQueue pool = _pinned;
        for (int i = 0; i < N; i++)
        {
            byte[] a = pool.Rent();
            a[0] = (byte)i;
            pool.Return(a);
        }
    }

    [Benchmark(OperationsPerInvoke = N)]
    public unsafe void NativeMemoryAlignedAlloc()
    {
        for (int i = 0; i < N; i++)
        {
            byte* a = (byte*)NativeMemory.AlignedAlloc(BlockSize, BlockSize);
            *a = (byte)i;
            NativeMemory.AlignedFree(a);
        }
    }

    /// <summary>
    /// The shape of ASP.NET Core's PinnedBlockMemoryPool: a ConcurrentQueue of 4 KiB arrays allocated on the
    /// pinned object heap, a new block when the queue is empty.
    /// </summary>
    private sealed class PinnedBlockQueue
    {
        private readonly ConcurrentQueue<byte[]> _blocks = new();

        public byte[] Rent() => _blocks.TryDequeue(out byte[]? block) ? block : GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true);

        public void Return(byte[] block) => _blocks.Enqueue(block);
    }
}
