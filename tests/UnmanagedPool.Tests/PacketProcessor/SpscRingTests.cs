using PacketProcessor.Engine;

namespace UnmanagedPool.Tests.PacketProcessor;

public class SpscRingTests
{
    [Fact]
    public unsafe void Each_side_keeps_its_shared_index_alone_on_a_cache_line_and_its_private_words_on_the_next()
    {
        RingSide side = default;
        byte* b = (byte*)&side;
        Assert.Equal(128, (int)((byte*)&side.Shared - b));
        Assert.Equal(256, (int)((byte*)&side.Local - b));
        Assert.Equal(264, (int)((byte*)&side.Cached - b));
        Assert.Equal(384, sizeof(RingSide));
    }

    [Fact]
    public void Written_items_stay_invisible_until_published()
    {
        var ring = new SpscRing<int>(4);
        Assert.True(ring.TryWrite(1));
        Assert.False(ring.TryRead(out _));
        ring.Publish();
        Assert.True(ring.TryRead(out int v));
        Assert.Equal(1, v);
    }

    [Fact]
    public void A_full_ring_refuses_writes_until_the_consumer_releases()
    {
        var ring = new SpscRing<int>(4);
        for (int i = 0; i < 4; i++)
            Assert.True(ring.TryWrite(i));
        Assert.False(ring.TryWrite(4));
        Assert.False(ring.HasRoom(1));
        ring.Publish();
        Assert.True(ring.TryRead(out _));
        Assert.False(ring.TryWrite(4));
        ring.Release();
        Assert.True(ring.HasRoom(1));
        Assert.True(ring.TryWrite(4));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(1)]
    public void Capacity_must_be_a_power_of_two_of_at_least_two(int capacity)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SpscRing<int>(capacity));
    }

    [Fact]
    public void Two_threads_pass_a_million_items_in_order()
    {
        const int n = 1_000_000;
        var ring = new SpscRing<long>(64);
        long expected = 0;
        bool inOrder = true;
        var consumer = new Thread(() =>
        {
            while (expected < n)
            {
                while (ring.TryRead(out long v))
                {
                    inOrder &= v == expected;
                    expected++;
                }
                ring.Release();
            }
        });
        consumer.Start();
        for (long i = 0; i < n; i++)
        {
            while (!ring.TryWrite(i))
            {
                ring.Publish();
                Thread.Yield();
            }
            if ((i & 15) == 15)
                ring.Publish();
        }
        ring.Publish();
        Assert.True(consumer.Join(TimeSpan.FromSeconds(60)));
        Assert.True(inOrder);
        Assert.Equal(n, expected);
    }
}
