using UnmanagedPool.Internal;
using UnmanagedPool.Native;
using UnmanagedPool.Tests.Pool;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// Issue 18, case 6: piece A of a fragment page put twice while piece B of the same page is still live. A put names
/// the page, so the count after the surplus put is the one A and B put once each would leave: the pool would take
/// the page back and cut a new piece over B. In debug mode a put that names the piece by its address checks that the
/// piece is live and marks it put, so the second put of A throws, names the page and the piece's offset, and changes
/// nothing: the page is not taken back and no new piece overlaps B.
/// </summary>
[Collection(RaceHookCollection.Name)]
public unsafe class SurplusFragPutTests
{
    public enum PutWay
    {
        /// <summary><see cref="PagePool.FreeVa"/> on the consumer thread.</summary>
        FreeVa,

        /// <summary><see cref="PagePoolPointerExtensions.PutPage(PagePool, byte*, int, bool)"/> on the consumer thread.</summary>
        PutPageAddress,

        /// <summary>The consumer handle's <see cref="PagePoolPointerExtensions.PutPage(PagePoolConsumer, byte*, int, bool)"/>.</summary>
        ConsumerPutPageAddress,

        /// <summary>The consumer handle's <see cref="PagePoolConsumer.FreeVa"/>.</summary>
        ConsumerFreeVa,

        /// <summary><see cref="PagePoolPointerExtensions.PutPage(PagePool, byte*, int, bool)"/> from a thread other than the consumer.</summary>
        OtherThreadPutPageAddress,

        /// <summary><see cref="PagePool.FreeVa"/> from a thread other than the consumer.</summary>
        OtherThreadFreeVa,

        /// <summary>A <see cref="Packet"/> holding the piece, freed on the consumer thread.</summary>
        PacketFree,

        /// <summary>A <see cref="Packet"/> holding the piece, freed from another thread.</summary>
        OtherThreadPacketFree,
    }

    // Three armed pieces fit a 4096-byte page in debug mode (a slot is the guard line plus the piece rounded up).
    private const int PieceSize = 1000;

    private static PagePool NewDebugPool() => new(new PagePoolOptions { PoolSize = 64, DebugMode = true });

    private static void Put(PagePool pool, PagePoolConsumer consumer, PutWay way, NetMemRef page, int offset)
    {
        byte* va = page.Address + offset;
        switch (way)
        {
            case PutWay.FreeVa:
                pool.FreeVa(va);
                break;
            case PutWay.PutPageAddress:
                pool.PutPage(va);
                break;
            case PutWay.ConsumerPutPageAddress:
                consumer.PutPage(va);
                break;
            case PutWay.ConsumerFreeVa:
                consumer.FreeVa(va);
                break;
            case PutWay.OtherThreadPutPageAddress:
                OtherThread.Run(() => pool.PutPage(va));
                break;
            case PutWay.OtherThreadFreeVa:
                OtherThread.Run(() => pool.FreeVa(va));
                break;
            case PutWay.PacketFree:
                FreeAsPacket(page, offset);
                break;
            case PutWay.OtherThreadPacketFree:
                OtherThread.Run(() => FreeAsPacket(page, offset));
                break;
        }
    }

    private static void FreeAsPacket(NetMemRef page, int offset)
    {
        var packet = new Packet();
        // A head that starts inside the piece (past a headroom), as a driver builds one.
        packet.SetHead(page, offset + 64, 200);
        packet.MarkForRecycle();
        packet.Free();
    }

    [Theory]
    [InlineData(PutWay.FreeVa)]
    [InlineData(PutWay.PutPageAddress)]
    [InlineData(PutWay.ConsumerPutPageAddress)]
    [InlineData(PutWay.ConsumerFreeVa)]
    [InlineData(PutWay.OtherThreadPutPageAddress)]
    [InlineData(PutWay.OtherThreadFreeVa)]
    [InlineData(PutWay.PacketFree)]
    [InlineData(PutWay.OtherThreadPacketFree)]
    public void Debug_mode_refuses_a_second_put_of_a_piece_while_another_piece_of_its_page_is_live(PutWay way)
    {
        var pool = NewDebugPool();
        PagePoolConsumer consumer = pool.BindConsumer();
        NetMemRef a = pool.AllocFrag(PieceSize, out int offA);
        NetMemRef b = pool.AllocFrag(PieceSize, out int offB);
        Assert.Equal(a, b);
        byte* bStart = b.Address + offB;
        new Span<byte>(bStart, PieceSize).Fill(0x42);

        Put(pool, consumer, way, a, offA);
        long count = a.Value.PpRefCount;
        long inFlight = pool.InFlight;

        // The surplus put: A again. B is still live, so the count alone would accept it.
        var ex = Assert.ThrowsAny<InvalidOperationException>(() => Put(pool, consumer, way, a, offA));
        Assert.Contains($"0x{(nint)a.Address:x}", ex.Message);
        Assert.Contains($"offset {offA}", ex.Message);
        Assert.Equal(count, a.Value.PpRefCount);
        Assert.Equal(inFlight, pool.InFlight);

        // Cut on until the consumer has moved to another page: no piece handed out overlaps B, and B is intact.
        var held = new List<(NetMemRef Page, int Offset)>();
        for (int i = 0; i < 8; i++)
        {
            NetMemRef p = pool.AllocFrag(PieceSize, out int off);
            Assert.False(p == b && off < offB + PieceSize && offB < off + PieceSize,
                $"piece at offset {off} of page 0x{(nint)p.Address:x} overlaps the live piece B at offset {offB}");
            held.Add((p, off));
        }
        Assert.True(new Span<byte>(bStart, PieceSize).IndexOfAnyExcept((byte)0x42) < 0, "B was written while live");

        // Everything comes back once: B, then the pieces cut after it. The pool ends with nothing in flight.
        pool.FreeVa(bStart);
        foreach (var (p, off) in held)
            pool.FreeVa(p.Address + off);
        pool.Dispose();
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void Debug_mode_lets_two_packets_sharing_a_piece_each_put_it_once()
    {
        var pool = NewDebugPool();
        pool.BindConsumer();
        NetMemRef a = pool.AllocFrag(PieceSize, out int offA);
        NetMemRef b = pool.AllocFrag(PieceSize, out int offB);
        var first = new Packet();
        first.SetHead(a, offA, 100);
        first.MarkForRecycle();
        var second = new Packet();
        first.ShareInto(second);

        // Two holders of A, one reference each: both frees are legitimate.
        first.Free();
        second.Free();
        // A third put of A is a surplus one.
        var ex = Assert.ThrowsAny<InvalidOperationException>(() => pool.FreeVa(a.Address + offA));
        Assert.Contains($"offset {offA}", ex.Message);

        pool.FreeVa(b.Address + offB);
        pool.Dispose();
        Assert.Equal(0, pool.InFlight);
    }

    [Fact]
    public void Debug_mode_of_two_puts_of_one_piece_at_the_same_moment_lets_exactly_one_through()
    {
        var pool = NewDebugPool();
        pool.BindConsumer();
        NetMemRef a = pool.AllocFrag(PieceSize, out int offA);
        NetMemRef b = pool.AllocFrag(PieceSize, out int offB);
        long before = a.Value.PpRefCount;
        using var atPause = new ManualResetEventSlim();
        using var resume = new ManualResetEventSlim();
        Exception? firstError = null;
        var first = new Thread(() =>
        {
            int me = Environment.CurrentManagedThreadId;
            RaceHooks.Pause = point =>
            {
                // The first put has marked the piece put and not yet dropped its reference.
                if (point != RaceHooks.DebugPiecePut || Environment.CurrentManagedThreadId != me)
                    return;
                atPause.Set();
                resume.Wait();
            };
            try
            {
                pool.PutPage(a.Address + offA);
            }
            catch (Exception e)
            {
                firstError = e;
            }
        });
        try
        {
            first.Start();
            Assert.True(atPause.Wait(TimeSpan.FromSeconds(30)), "the first put never reached the pause point");
            var ex = Assert.ThrowsAny<InvalidOperationException>(() => OtherThread.Run(() => pool.PutPage(a.Address + offA)));
            Assert.Contains($"offset {offA}", ex.Message);
            Assert.Equal(before, a.Value.PpRefCount);
        }
        finally
        {
            RaceHooks.Pause = null;
            resume.Set();
            first.Join();
        }
        Assert.Null(firstError);
        Assert.Equal(before - 1, a.Value.PpRefCount);

        pool.FreeVa(b.Address + offB);
        pool.Dispose();
        Assert.Equal(0, pool.InFlight);
    }
}
