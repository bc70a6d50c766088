using System.Buffers;
using System.IO.Pipelines;
using UnmanagedPool.Native;
using Xunit.Abstractions;

namespace UnmanagedPool.Tests.Frag;

public class MemoryPoolTests(ITestOutputHelper output)
{
    private static byte Pattern(long i) => (byte)(i * 131 + (i >> 11));

    [Fact]
    public void Rent_gives_a_fragment_or_a_page_and_Dispose_puts_it_back()
    {
        var pool = new PagePool(new PagePoolOptions { DebugMode = false });
        pool.BindConsumer();
        using var mp = new PagePoolMemoryPool(pool);
        Assert.Equal(4096, mp.MaxBufferSize);
        var small = mp.Rent(100);
        Assert.Equal(128, small.Memory.Length);
        var m = Assert.IsType<PageMemoryManager>(small);
        Assert.Equal(PagePool.BiasMax, m.Page.Value.PpRefCount);
        unsafe
        {
            using var h = small.Memory.Pin();
            Assert.True(h.Pointer == m.Page.Address + m.Offset);
        }
        small.Memory.Span.Fill(7);
        var big = mp.Rent();
        Assert.Equal(4096, big.Memory.Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => mp.Rent(4097));
        Assert.Throws<ArgumentOutOfRangeException>(() => mp.Rent(-2));
        small.Dispose();
        Assert.Throws<ObjectDisposedException>(small.Dispose);
        big.Dispose();
        // An owner is never handed to a second renter (a late second Dispose must not reach the new buffer).
        var again = mp.Rent(100);
        Assert.False(ReferenceEquals(again, big) || ReferenceEquals(again, small));
        again.Dispose();
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void Rent_and_Dispose_allocate_only_the_owner_object_in_steady_state()
    {
        using var mp = new PagePoolMemoryPool(new PagePoolOptions { DebugMode = false });
        static void Round(PagePoolMemoryPool mp)
        {
            var a = mp.Rent(512);
            var b = mp.Rent(4096);
            a.Dispose();
            b.Dispose();
        }
        for (int i = 0; i < 1000; i++)
            Round(mp);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++)
            Round(mp);
        long perRent = (GC.GetAllocatedBytesForCurrentThread() - before) / 20_000;
        output.WriteLine($"{perRent} bytes allocated per rent");
        // One PageMemoryManager (64 bytes on 64-bit) per rent and nothing else.
        Assert.True(perRent is > 0 and <= 64, $"{perRent} bytes per rent");
    }

    [Fact]
    public void WrapMemory_and_Dispose_allocate_nothing_in_steady_state()
    {
        using var pool = new PagePool(new PagePoolOptions { DebugMode = false });
        static void Round(PagePool pool)
        {
            IDisposable a = pool.WrapMemory(pool.AllocPage(), 0, 512);
            IDisposable b = pool.WrapMemory(pool.AllocPage(), 0, 4096);
            a.Dispose();
            b.Dispose();
        }
        for (int i = 0; i < 1000; i++)
            Round(pool);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++)
            Round(pool);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Theory]
    [InlineData(100 * 1024 * 1024, 4096)]
    [InlineData(8 * 1024 * 1024, 512)]
    public async Task Bytes_pushed_through_a_pipe_on_the_pool_arrive_intact_and_every_page_comes_back(int total, int segment)
    {
        var pool = new PagePool(new PagePoolOptions { PoolSize = 4096, DebugMode = false });
        using var mp = new PagePoolMemoryPool(pool, ownsPool: true);
        var pipe = new Pipe(new PipeOptions(pool: mp, minimumSegmentSize: segment, useSynchronizationContext: false));

        var writer = Task.Run(async () =>
        {
            long pos = 0;
            var rng = new Random(42);
            while (pos < total)
            {
                int want = (int)Math.Min(total - pos, rng.Next(1, 3 * segment));
                Memory<byte> mem = pipe.Writer.GetMemory(1);
                int n = Math.Min(want, mem.Length);
                Span<byte> span = mem.Span[..n];
                for (int i = 0; i < n; i++)
                    span[i] = Pattern(pos + i);
                pipe.Writer.Advance(n);
                pos += n;
                await pipe.Writer.FlushAsync();
            }
            await pipe.Writer.CompleteAsync();
        });
        var reader = Task.Run(async () =>
        {
            long pos = 0;
            while (true)
            {
                ReadResult r = await pipe.Reader.ReadAsync();
                foreach (ReadOnlyMemory<byte> seg in r.Buffer)
                {
                    ReadOnlySpan<byte> s = seg.Span;
                    for (int i = 0; i < s.Length; i++)
                        if (s[i] != Pattern(pos + i))
                            throw new InvalidDataException($"byte {pos + i}: {s[i]} != {Pattern(pos + i)}");
                    pos += s.Length;
                }
                pipe.Reader.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted)
                    break;
            }
            await pipe.Reader.CompleteAsync();
            return pos;
        });
        await writer;
        Assert.Equal(total, await reader);
        mp.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.InFlight);
    }
}
