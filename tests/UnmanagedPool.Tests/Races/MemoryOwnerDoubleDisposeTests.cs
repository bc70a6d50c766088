using System.Buffers;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// Issue 18 case 8: disposing an <see cref="IMemoryOwner{T}"/> twice never disposes another renter's buffer.
/// </summary>
public unsafe class MemoryOwnerDoubleDisposeTests
{
    [Theory]
    [InlineData(100)]
    [InlineData(4096)]
    public void A_second_Dispose_after_the_pool_rented_again_throws_and_leaves_the_new_renter_alone(int size)
    {
        var pool = new PagePool(new PagePoolOptions { DebugMode = false });
        using var mp = new PagePoolMemoryPool(pool, ownsPool: true);
        IMemoryOwner<byte> first = mp.Rent(size);
        first.Dispose();
        IMemoryOwner<byte> second = mp.Rent(size);
        second.Memory.Span.Fill(0x5a);
        Assert.Throws<ObjectDisposedException>(first.Dispose);
        Assert.True(((PageMemoryManager)second).IsOwned);
        // The next renter does not alias the second one's bytes.
        IMemoryOwner<byte> third = mp.Rent(size);
        third.Memory.Span.Fill(0x11);
        Assert.All(second.Memory.Span.ToArray(), b => Assert.Equal(0x5a, b));
        second.Dispose();
        third.Dispose();
        Assert.Throws<ObjectDisposedException>(second.Dispose);
        mp.Dispose();
        Assert.True(pool.IsFreed);
    }

    [Fact]
    public void Debug_mode_never_reuses_a_wrapper_so_a_late_second_Dispose_of_WrapMemory_is_caught()
    {
        var pool = new PagePool(new PagePoolOptions { DebugMode = true });
        PageMemoryManager first = pool.WrapMemory(pool.AllocPage(), 0, 100);
        ((IDisposable)first).Dispose();
        PageMemoryManager second = pool.WrapMemory(pool.AllocPage(), 0, 100);
        Assert.Throws<ObjectDisposedException>(() => ((IDisposable)first).Dispose());
        Assert.True(second.IsOwned);
        ((IDisposable)second).Dispose();
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }
}
