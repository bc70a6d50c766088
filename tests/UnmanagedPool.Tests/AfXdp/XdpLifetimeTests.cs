using System.Diagnostics;
using UnmanagedPool.AfXdp;
using UnmanagedPool.Native;
using UnmanagedPool.Tests.PacketProcessor;

namespace UnmanagedPool.Tests.AfXdp;

/// <summary>What a socket's rings, a program and a shared UMEM do once their owner is disposed (or dropped).</summary>
[Collection(nameof(XdpCollection))]
public class XdpLifetimeTests
{
    private static XdpSocketOptions Small(string name, int rx = 64, int tx = 64) =>
        new() { Interface = name, FillSize = 64, CompletionSize = 64, RxSize = rx, TxSize = tx };

    /// <summary>A socket on the same queue, retried while the kernel's deferred release of the old one keeps the queue busy.</summary>
    private static XdpSocket BindAgain(UmemProvider umem, XdpSocketOptions options)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return new XdpSocket(umem, options);
            }
            catch (XdpException e) when (e.Error == XdpError.Busy && clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                Thread.Sleep(20);
            }
        }
    }

    [RootNetnsFact]
    public void After_Dispose_every_ring_and_socket_call_throws_ObjectDisposedException_and_the_queue_is_free()
    {
        using var veth = new IsolatedVeth();
        using var umem = new UmemProvider(1 << 20);
        var pool = new PagePool(new PagePoolOptions { MemoryProvider = umem, Name = "xdp-life" });
        var socket = new XdpSocket(umem, Small(veth.Host));
        XdpProducerRing<ulong> fill = socket.FillRing;
        XdpConsumerRing<ulong> comp = socket.CompletionRing;
        XdpConsumerRing<XdpDesc> rx = socket.RxRing!;
        XdpProducerRing<XdpDesc> tx = socket.TxRing!;
        Assert.False(fill.IsClosed || comp.IsClosed || rx.IsClosed || tx.IsClosed);
        Assert.Equal(64u, fill.Free(1));
        // Reserve before the Dispose: the index stays in the caller's hands across it.
        Assert.Equal(2u, fill.Reserve(2, out uint index));

        socket.Dispose();
        socket.Dispose(); // once only

        Assert.True(fill.IsClosed && comp.IsClosed && rx.IsClosed && tx.IsClosed);
        Assert.Throws<ObjectDisposedException>(() => fill.Free(1));
        Assert.Throws<ObjectDisposedException>(() => fill.Reserve(1, out _));
        Assert.Throws<ObjectDisposedException>(() => fill.Submit(2));
        Assert.Throws<ObjectDisposedException>(() => fill.Outstanding);
        Assert.Throws<ObjectDisposedException>(() => fill.NeedsWakeup);
        Assert.Throws<ObjectDisposedException>(() => tx.Reserve(1, out _));
        Assert.Throws<ObjectDisposedException>(() => tx.Submit(1));
        Assert.Throws<ObjectDisposedException>(() => comp.Peek(1, out _));
        Assert.Throws<ObjectDisposedException>(() => comp.Release(1));
        Assert.Throws<ObjectDisposedException>(() => comp.NeedsWakeup);
        Assert.Throws<ObjectDisposedException>(() => rx.Peek(1, out _));
        Assert.Throws<ObjectDisposedException>(() => rx.Release(1));
        Assert.Throws<ObjectDisposedException>(() => rx.NeedsWakeup);
        // The indexer is not checked (it is per entry): the range is still mapped, as memory of the ring's own.
        fill[index] = 0x1234;
        Assert.Equal(0x1234ul, fill[index]);
        Assert.Equal(0ul, comp[0]);
        Assert.Equal(0u, rx[5].Len);
        tx[index].Len = 60;

        NetMemRef page = pool.AllocPage();
        Assert.Throws<ObjectDisposedException>(() => socket.Fill([page]));
        Assert.Throws<ObjectDisposedException>(() => socket.Transmit([new UmemFrame(page, 256, 60)]));
        Assert.Throws<ObjectDisposedException>(() => socket.Receive(new UmemFrame[4]));
        Assert.Throws<ObjectDisposedException>(() => socket.Complete(new NetMemRef[4]));
        Assert.Throws<ObjectDisposedException>(() => socket.WakeupTx());
        Assert.Throws<ObjectDisposedException>(() => socket.WakeupRx());
        Assert.Throws<ObjectDisposedException>(() => socket.WaitReceive(0));
        Assert.Throws<ObjectDisposedException>(() => socket.GetStatistics());
        Assert.Equal(0, socket.HeldByKernel); // the refused calls handed nothing over
        pool.RecycleDirect(page);

        // The kernel let the socket go: its queue takes a new one.
        using (XdpSocket again = BindAgain(umem, Small(veth.Host)))
            Assert.False(again.FillRing.IsClosed);
        GC.KeepAlive(fill);
        pool.Dispose();
        Assert.Equal(0, umem.ChunksInUse);
    }

    [RootNetnsFact]
    public void A_socket_disposed_on_another_thread_while_its_rings_are_in_use_crashes_nothing_and_stops_the_rings()
    {
        using var veth = new IsolatedVeth();
        using var umem = new UmemProvider(1 << 20);
        var socket = new XdpSocket(umem, Small(veth.Host));
        using var started = new ManualResetEventSlim();
        Exception? ended = null;
        long calls = 0;
        var user = new Thread(() =>
        {
            XdpProducerRing<ulong> fill = socket.FillRing;
            XdpConsumerRing<XdpDesc> rx = socket.RxRing!;
            try
            {
                while (true)
                {
                    // The caller's bug: a Dispose that races these. It may land between any two of them.
                    uint n = fill.Reserve(8, out uint i);
                    for (uint k = 0; k < n; k++)
                        fill[i + k] = (ulong)k << 12;
                    fill.Submit(0);       // reserved entries are never published: the kernel is given nothing
                    fill.Reserve(0, out _);
                    uint got = rx.Peek(8, out uint j);
                    for (uint k = 0; k < got; k++)
                        _ = rx[j + k].Addr;
                    rx.Release(0);
                    if (++calls == 1000)
                        started.Set();
                }
            }
            catch (Exception e)
            {
                ended = e;
            }
        });
        user.Start();
        Assert.True(started.Wait(TimeSpan.FromSeconds(30)));
        socket.Dispose();
        Assert.True(user.Join(TimeSpan.FromSeconds(30)));
        Assert.IsType<ObjectDisposedException>(ended);
    }

    [RootNetnsFact]
    public void A_ring_still_held_keeps_a_dropped_socket_open_until_the_ring_is_dropped_too()
    {
        using var veth = new IsolatedVeth();
        using var umem = new UmemProvider(1 << 20);
        // The ring lives in a box, so that no stack slot of this method holds it once the box is emptied.
        var box = new System.Runtime.CompilerServices.StrongBox<XdpProducerRing<ulong>?>();
        WeakReference dropped = OpenAndKeepRing(umem, Small(veth.Host), box);
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.False(dropped.IsAlive); // the socket object is gone, but not what its ring needs
        UseRing(box, umem, Small(veth.Host));
        box.Value = null;

        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        using XdpSocket again = BindAgain(umem, Small(veth.Host)); // the ring went, and the socket with it
        Assert.False(XdpSocket.IsClosed(again));
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static WeakReference OpenAndKeepRing(UmemProvider umem, XdpSocketOptions options, System.Runtime.CompilerServices.StrongBox<XdpProducerRing<ulong>?> box)
    {
        var socket = new XdpSocket(umem, options);
        box.Value = socket.FillRing;
        return new WeakReference(socket);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void UseRing(System.Runtime.CompilerServices.StrongBox<XdpProducerRing<ulong>?> box, UmemProvider umem, XdpSocketOptions options)
    {
        XdpProducerRing<ulong> fill = box.Value!;
        Assert.False(fill.IsClosed);
        Assert.Equal(64u, fill.Free(64));     // the kernel's mapping is still there
        var e = Assert.Throws<XdpException>(() => new XdpSocket(umem, options));
        Assert.Equal(XdpError.Busy, e.Error); // and the socket still holds its queue
    }

    [RootNetnsFact]
    public void A_disposed_program_or_socket_is_refused_by_Register_and_Dispose_is_idempotent()
    {
        using var veth = new IsolatedVeth();
        using var umem = new UmemProvider(1 << 20);
        var program = new XdpProgram(veth.Host);
        var socket = new XdpSocket(umem, Small(veth.Host, tx: 0));
        program.Register(0, socket);
        Assert.True(program.Unregister(0));
        socket.Dispose();
        // Its descriptor number may name another file by now: never handed to the kernel.
        Assert.Throws<ObjectDisposedException>(() => program.Register(0, socket));

        program.Dispose();
        program.Dispose();
        Assert.False(program.IsAttached);
        Assert.Equal(-1, program.MapFd);
        Assert.Equal(-1, program.ProgramFd);
        Assert.Equal(-1, program.LinkFd);
        using XdpSocket other = BindAgain(umem, Small(veth.Host, tx: 0));
        Assert.Throws<ObjectDisposedException>(() => program.Register(0, other));
        Assert.Throws<ObjectDisposedException>(() => program.Unregister(0));
        Assert.False(veth.HostHasXdp());

        // Disposed from two threads at once: one detach, no error.
        var twice = new XdpProgram(veth.Host);
        Parallel.For(0, 4, _ => twice.Dispose());
        Assert.False(twice.IsAttached);
        Assert.False(veth.HostHasXdp());
    }

    [RootNetnsFact]
    public void A_page_from_outside_the_umem_is_refused_and_nothing_of_its_batch_reaches_the_kernel()
    {
        using var veth = new IsolatedVeth();
        using var umem = new UmemProvider(1 << 20);
        using var elsewhere = new UmemProvider(1 << 20);
        var pool = new PagePool(new PagePoolOptions { MemoryProvider = umem, Name = "xdp-own" });
        var foreign = new PagePool(new PagePoolOptions { MemoryProvider = elsewhere, Name = "xdp-foreign" });
        NetMemRef[] mine = new NetMemRef[3];
        Assert.Equal(3, pool.AllocPages(mine));
        NetMemRef stranger = foreign.AllocPage();
        var socket = new XdpSocket(umem, Small(veth.Host));
        try
        {
            uint before = socket.FillRing.Outstanding;
            var e = Assert.Throws<ArgumentException>(() => socket.Fill([mine[0], mine[1], stranger]));
            Assert.Contains("Entry 2", e.Message);
            Assert.Equal(before, socket.FillRing.Outstanding);
            Assert.Equal(0, socket.HeldByKernel);
            e = Assert.Throws<ArgumentException>(() => socket.Transmit([new UmemFrame(mine[0], 256, 60), new UmemFrame(stranger, 256, 60)]));
            Assert.Contains("Entry 1", e.Message);
            Assert.Equal(0, socket.HeldByKernel);
            // The ring goes on from where it was: the next batch is all the kernel sees.
            Assert.Equal(1, socket.Fill([mine[2]]));
            Assert.Equal(before + 1, socket.FillRing.Outstanding);
            Assert.Equal(1, socket.HeldByKernel);
        }
        finally
        {
            socket.Dispose();
        }
        var back = new NetMemRef[4];
        Assert.Equal(1, socket.ReclaimHeld(back));
        Assert.Equal(mine[2], back[0]);
        pool.RecycleDirect(mine[0]);
        pool.RecycleDirect(mine[1]);
        pool.RecycleDirect(mine[2]);
        foreign.RecycleDirect(stranger);
        pool.Dispose();
        foreign.Dispose();
        Assert.Equal(0, umem.ChunksInUse);
        Assert.Equal(0, elsewhere.ChunksInUse);
    }

    [RootNetnsFact]
    public void A_socket_cannot_share_the_umem_of_a_disposed_socket()
    {
        using var vethA = new IsolatedVeth();
        using var vethB = new IsolatedVeth();
        using var umem = new UmemProvider(1 << 20);
        var owner = new XdpSocket(umem, Small(vethA.Host));
        owner.Dispose();
        Assert.Throws<ObjectDisposedException>(() => new XdpSocket(null, new XdpSocketOptions
        {
            Interface = vethB.Host, SharedUmem = owner, FillSize = 64, CompletionSize = 64, RxSize = 64, TxSize = 0,
        }));
        Assert.Equal(0, umem.ChunksInUse);
    }
}
