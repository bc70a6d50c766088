using System.Buffers.Binary;
using System.Diagnostics;
using UnmanagedPool.AfXdp;
using UnmanagedPool.Native;
using UnmanagedPool.Tests.PacketProcessor;

namespace UnmanagedPool.Tests.AfXdp;

public class XdpProgramEncodingTests
{
    [Fact]
    public void The_redirect_program_is_the_six_instruction_slots_of_the_xskmap_redirect()
    {
        ulong[] p = XdpProgram.BuildRedirectProgram(7);
        byte[] bytes = new byte[p.Length * 8];
        for (int i = 0; i < p.Length; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), p[i]);
        byte[] expected =
        [
            0x61, 0x12, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, // r2 = *(u32 *)(r1 + 16)
            0x18, 0x11, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, // r1 = map fd 7 (pseudo map fd)
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0xb7, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // r3 = XDP_PASS
            0x85, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00, // call bpf_redirect_map
            0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // exit
        ];
        Assert.Equal(expected, bytes);
    }
}

/// <summary>
/// A veth pair whose peer end lives in a network namespace of its own, both created by the test and deleted with
/// it; IPv6 is off on both ends so that no stack traffic mixes with the test's frames.
/// </summary>
internal sealed class IsolatedVeth : IDisposable
{
    private static int s_next;

    /// <param name="queues">RX and TX queues of each end (a veth has one unless told).</param>
    /// <param name="addresses">Give both ends IPv4 addresses (<see cref="HostIp"/>, <see cref="PeerIp"/>) and the peer a static neighbour entry for the host, so that no ARP is needed.</param>
    public IsolatedVeth(int queues = 1, bool addresses = false)
    {
        int pid = Environment.ProcessId % 100_000;
        int n = Interlocked.Increment(ref s_next);
        Namespace = $"upx-{pid}-{n}";
        Host = $"uxh{pid}n{n}";
        Peer = $"uxp{pid}n{n}";
        try
        {
            AfPacketIntegrationTests.Ip($"netns add {Namespace}");
            AfPacketIntegrationTests.Ip(queues == 1
                ? $"link add {Host} type veth peer name {Peer}"
                : $"link add {Host} numtxqueues {queues} numrxqueues {queues} type veth peer name {Peer} numtxqueues {queues} numrxqueues {queues}");
            AfPacketIntegrationTests.Ip($"link set {Peer} netns {Namespace}");
            TrySysctl(null, $"net.ipv6.conf.{Host}.disable_ipv6=1");
            TrySysctl(Namespace, $"net.ipv6.conf.{Peer}.disable_ipv6=1");
            AfPacketIntegrationTests.Ip($"link set {Host} up");
            AfPacketIntegrationTests.Ip($"netns exec {Namespace} ip link set {Peer} up");
            HostMac = File.ReadAllText($"/sys/class/net/{Host}/address").Trim();
            if (addresses)
            {
                // Both addresses live only on this pair, inside the test's own namespace and on its host end.
                int subnet = n % 200 + 20;
                HostIp = $"10.232.{subnet}.1";
                PeerIp = $"10.232.{subnet}.2";
                AfPacketIntegrationTests.Ip($"addr add {HostIp}/24 dev {Host}");
                AfPacketIntegrationTests.Ip($"netns exec {Namespace} ip addr add {PeerIp}/24 dev {Peer}");
                AfPacketIntegrationTests.Ip($"netns exec {Namespace} ip neigh replace {HostIp} lladdr {HostMac} dev {Peer} nud permanent");
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Namespace { get; }
    public string Host { get; }
    public string Peer { get; }
    public string HostMac { get; } = "";
    public string HostIp { get; } = "";
    public string PeerIp { get; } = "";

    /// <summary>The trafgen binary (netsniff-ng; <c>.ci/run</c> installs it), or null when it is not installed.</summary>
    public static string? Trafgen => RootNetnsFactAttribute.Find("trafgen");

    /// <summary>
    /// Sends <paramref name="count"/> UDP datagrams to <see cref="HostIp"/>:<paramref name="port"/> from inside the
    /// namespace and returns the sender that did: with <see cref="UdpSender.Auto"/>, one trafgen process bound to the
    /// peer end where trafgen is installed, otherwise the C# sender.
    /// </summary>
    public Task<UdpSender> SendUdpAsync(int count, ushort port, UdpSender sender = UdpSender.Auto) => Task.Run(() =>
    {
        if (sender == UdpSender.Auto)
            sender = Trafgen != null ? UdpSender.Trafgen : UdpSender.CSharp;
        if (sender == UdpSender.Trafgen)
            SendWithTrafgen(count, port);
        else
            NetnsSender.SendUdp(Namespace, HostIp, port, count);
        return sender;
    });

    /// <summary>
    /// One trafgen process on the peer end, <paramref name="count"/> 64-byte IPv4/UDP frames (22 bytes of payload)
    /// rate-limited to <see cref="TrafgenRate"/> frames per second: slow enough that a receiver on a busy machine
    /// keeps up, so that every frame must be counted and none may show as a kernel drop. Checks that trafgen
    /// reports every frame sent.
    /// </summary>
    private void SendWithTrafgen(int count, ushort port)
    {
        string config = Path.Combine(Path.GetTempPath(), $"{Namespace}.trafgen");
        File.WriteAllText(config,
            $"{{ eth(da={HostMac}), ipv4(saddr={PeerIp}, daddr={HostIp}, ttl=64), udp(sp=40000, dp={port}), fill(0x5a, 22) }}\n");
        try
        {
            // --no-sock-mem: trafgen would otherwise raise the system's socket buffer defaults while it runs.
            var psi = new ProcessStartInfo(AfPacketIntegrationTests.FindIp(),
                ["netns", "exec", Namespace, Trafgen!, "--dev", Peer, "--conf", config, "--num", count.ToString(System.Globalization.CultureInfo.InvariantCulture),
                 "--cpus", "1", "--rate", $"{TrafgenRate}pps", "--no-sock-mem"])
            { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi)!;
            Task<string> err = p.StandardError.ReadToEndAsync();
            string output = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(30_000))
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException("trafgen did not finish in 30 s.");
            }
            output += err.GetAwaiter().GetResult();
            if (p.ExitCode != 0)
                throw new InvalidOperationException($"trafgen failed ({p.ExitCode}): {output}");
            Assert.Contains($"{count} packets outgoing", output);
        }
        finally
        {
            File.Delete(config);
        }
    }

    /// <summary>The rate trafgen sends at, frames per second.</summary>
    public const int TrafgenRate = 50_000;

    /// <summary>
    /// Sends <paramref name="count"/> 64-byte frames of ethertype 0x88b5 from the peer end to the host end (a raw
    /// AF_PACKET sender run inside the namespace), paced at 100 frames per 2 ms. Frame i carries "UPXD", i (big
    /// endian) and bytes (i + j) &amp; 0xff at offsets j = 22..63.
    /// </summary>
    public Task SendAsync(int count, int tag = 0) => Task.Run(() =>
    {
        byte[] header = Convert.FromHexString(HostMac.Replace(":", "") + "020000000001" + "88b5");
        NetnsSender.SendRaw(Namespace, Peer, count, 64, (i, frame) =>
        {
            int v = i + tag;
            header.CopyTo(frame, 0);
            "UPXD"u8.CopyTo(frame.AsSpan(14));
            BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(18), v);
            for (int j = 22; j < 64; j++)
                frame[j] = (byte)((v + j) & 0xff);
        });
    });

    /// <summary>Whether `ip link show` lists an XDP program on the host end.</summary>
    public bool HostHasXdp()
    {
        var psi = new ProcessStartInfo(AfPacketIntegrationTests.FindIp(), ["link", "show", "dev", Host]) { RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        string text = p.StandardOutput.ReadToEnd();
        p.WaitForExit(10_000);
        return text.Contains("xdp", StringComparison.Ordinal);
    }

    public void Dispose()
    {
        AfPacketIntegrationTests.TryIp($"netns del {Namespace}");
        AfPacketIntegrationTests.TryIp($"link del {Host}");
    }

    private static void TrySysctl(string? ns, string setting)
    {
        string[] args = ns == null ? ["-w", setting] : ["netns", "exec", ns, "sysctl", "-w", setting];
        string file = ns == null ? (RootNetnsFactAttribute.Find("sysctl") ?? "sysctl") : AfPacketIntegrationTests.FindIp();
        try
        {
            AfPacketIntegrationTests.Run(file, args, check: false);
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
        }
    }
}

/// <summary>Which program sends a test's UDP datagrams from inside the namespace.</summary>
internal enum UdpSender
{
    /// <summary>trafgen where installed, otherwise the C# sender.</summary>
    Auto,

    /// <summary>One trafgen process (netsniff-ng) on the peer end, rate-limited.</summary>
    Trafgen,

    /// <summary>The C# sender (<see cref="NetnsSender"/>): a UDP socket opened inside the namespace, paced at 100 datagrams per 2 ms.</summary>
    CSharp,
}

/// <summary>A receiver of the test frames on one AF_XDP socket, its pool over the socket's UMEM.</summary>
internal sealed unsafe class TestReceiver
{
    private readonly XdpSocket _socket;
    private readonly PagePool _pool;
    private readonly NetMemRef[] _refill = new NetMemRef[64];
    private readonly UmemFrame[] _frames = new UmemFrame[64];
    private readonly bool[] _seen;
    private readonly int _tag;

    public TestReceiver(XdpSocket socket, PagePool pool, int count, int tag = 0)
    {
        _socket = socket;
        _pool = pool;
        _seen = new bool[count];
        _tag = tag;
    }

    public int Matched { get; private set; }
    public int Other { get; private set; }
    public int BadPayload { get; private set; }

    /// <summary>Consumer thread of the pool only: keeps the fill ring full.</summary>
    public void Refill()
    {
        while (true)
        {
            int want = (int)Math.Min((uint)_refill.Length, _socket.FillRing.Free((uint)_refill.Length));
            if (want == 0)
                return;
            int got = _pool.AllocPages(_refill.AsSpan(0, want));
            if (got == 0)
                return;
            int filled = _socket.Fill(_refill.AsSpan(0, got));
            for (int i = filled; i < got; i++)
                _pool.RecycleDirect(_refill[i]);
            if (filled < want)
                return;
        }
    }

    /// <summary>
    /// Fills the fill ring, has <paramref name="veth"/>'s peer send every frame this receiver expects, and receives
    /// them (30 s at most each); asserts the sender finished, and every frame arrived once with its payload. The fill
    /// ring gets its buffers before the sender starts: a frame that finds it empty is dropped.
    /// </summary>
    public void ReceiveAllSentBy(IsolatedVeth veth)
    {
        Refill();
        Task sender = veth.SendAsync(_seen.Length, _tag);
        Run(TimeSpan.FromSeconds(30));
        Assert.True(sender.Wait(TimeSpan.FromSeconds(30)), "The sender did not finish.");
        sender.GetAwaiter().GetResult();
        Assert.Equal(0, BadPayload);
        Assert.Equal(_seen.Length, Matched);
    }

    /// <summary>Receives until every frame is seen or <paramref name="timeout"/> passes.</summary>
    public void Run(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        Refill();
        while (Matched < _seen.Length && clock.Elapsed < timeout)
        {
            int n = _socket.Receive(_frames);
            if (n == 0)
            {
                _socket.WaitReceive(10);
                continue;
            }
            for (int i = 0; i < n; i++)
            {
                Check(_frames[i]);
                _pool.RecycleDirect(_frames[i].Page);
            }
            Refill();
        }
    }

    private void Check(in UmemFrame frame)
    {
        Span<byte> d = frame.Data;
        Assert.True(frame.Page.IsPagePool, "A received chunk is not a pool page.");
        if (d.Length < 22 || d[12] != 0x88 || d[13] != 0xb5 || !d.Slice(14, 4).SequenceEqual("UPXD"u8))
        {
            Other++;
            return;
        }
        int v = BinaryPrimitives.ReadInt32BigEndian(d.Slice(18, 4));
        int i = v - _tag;
        bool ok = d.Length == 64 && (uint)i < (uint)_seen.Length && !_seen[i];
        for (int j = 22; ok && j < 64; j++)
            ok = d[j] == (byte)(v + j);
        if (!ok)
        {
            BadPayload++;
            return;
        }
        _seen[i] = true;
        Matched++;
    }

    /// <summary>After the socket is disposed: gives back every chunk the kernel still held.</summary>
    public int ReturnHeld()
    {
        int total = 0;
        var buffer = new NetMemRef[256];
        int n;
        while ((n = _socket.ReclaimHeld(buffer)) > 0)
        {
            for (int i = 0; i < n; i++)
                _pool.RecycleDirect(buffer[i]);
            total += n;
        }
        return total;
    }
}

/// <summary>AF_XDP on a veth pair the test creates: program, socket, UMEM pool, real frames, clean exit.</summary>
[Collection(nameof(XdpCollection))]
public class XdpSocketTests
{
    private const int Count = 2000;

    [RootNetnsFact]
    public void Every_frame_sent_through_a_veth_arrives_in_a_umem_pool_page_with_its_payload_and_nothing_is_left_behind()
    {
        using var veth = new IsolatedVeth();
        using var umem = new UmemProvider(16 << 20);
        var pool = new PagePool(new PagePoolOptions { MemoryProvider = umem, Name = "xdp-rx0" });
        var program = new XdpProgram(veth.Host);
        // Receive only: with a TX ring, every poll() in copy mode would try to send and count tx_ring_empty_descs.
        var socket = new XdpSocket(umem, new XdpSocketOptions { Interface = veth.Host, QueueId = 0, TxSize = 0 });
        var receiver = new TestReceiver(socket, pool, Count);
        try
        {
            Assert.False(socket.IsZeroCopy); // veth has no zero-copy AF_XDP: the kernel chose copy mode
            program.Register(0, socket);
            Assert.True(veth.HostHasXdp());

            receiver.ReceiveAllSentBy(veth);
            XdpStatistics stats = socket.GetStatistics();
            Assert.Equal(default, stats);
            Assert.True(socket.HeldByKernel > 0); // the fill ring's chunks
        }
        finally
        {
            socket.Dispose();
            program.Dispose();
        }
        int held = receiver.ReturnHeld();
        Assert.True(held > 0);
        Assert.Equal(0, socket.HeldByKernel);
        Assert.False(veth.HostHasXdp());
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.GetStats().InFlight);
        Assert.Equal(0, umem.ChunksInUse);
    }

    [RootNetnsFact]
    public void Two_sockets_on_two_interfaces_share_one_umem_each_with_its_own_pool_and_both_receive_every_frame()
    {
        using var vethA = new IsolatedVeth();
        using var vethB = new IsolatedVeth();
        // Rings of 2048: a receiver preempted for a while (a loaded machine) still finds buffers in its fill ring.
        using var umem = new UmemProvider(32 << 20);
        var poolA = new PagePool(new PagePoolOptions { MemoryProvider = umem, Name = "xdp-a" });
        var poolB = new PagePool(new PagePoolOptions { MemoryProvider = umem, Name = "xdp-b" });
        var progA = new XdpProgram(vethA.Host);
        var progB = new XdpProgram(vethB.Host);
        var small = new XdpSocketOptions { Interface = vethA.Host, FillSize = 2048, RxSize = 2048, TxSize = 0, CompletionSize = 64 };
        var a = new XdpSocket(umem, small);
        var b = new XdpSocket(null, new XdpSocketOptions
        {
            Interface = vethB.Host, SharedUmem = a, FillSize = 2048, RxSize = 2048, TxSize = 0, CompletionSize = 64,
        });
        var recvA = new TestReceiver(a, poolA, Count);
        var recvB = new TestReceiver(b, poolB, Count, tag: 1_000_000);
        try
        {
            Assert.Same(umem, b.Umem);
            progA.Register(0, a);
            progB.Register(0, b);
            // Both fill rings get their buffers before the first frame can arrive: a frame that finds its socket's
            // fill ring empty is dropped (under load the senders' first burst could otherwise come first).
            recvA.Refill();
            recvB.Refill();
            Task sendA = vethA.SendAsync(Count);
            Task sendB = vethB.SendAsync(Count, tag: 1_000_000);
            var clock = Stopwatch.StartNew();
            // One thread owns both pools and both sockets' receive sides here; alternate short runs.
            while ((recvA.Matched < Count || recvB.Matched < Count) && clock.Elapsed < TimeSpan.FromSeconds(40))
            {
                recvA.Run(TimeSpan.FromMilliseconds(5));
                recvB.Run(TimeSpan.FromMilliseconds(5));
            }
            Assert.True(Task.WaitAll([sendA, sendB], TimeSpan.FromSeconds(30)));
            Assert.Equal(Count, recvA.Matched);
            Assert.Equal(Count, recvB.Matched);
            Assert.Equal(0, recvA.BadPayload + recvB.BadPayload);
            Assert.Equal(default, a.GetStatistics());
            Assert.Equal(default, b.GetStatistics());
            Assert.True(umem.ChunksInUse <= umem.ChunkCount);
        }
        finally
        {
            b.Dispose();
            a.Dispose();
            progB.Dispose();
            progA.Dispose();
        }
        recvA.ReturnHeld();
        recvB.ReturnHeld();
        poolA.Dispose();
        poolB.Dispose();
        Assert.True(poolA.IsFreed && poolB.IsFreed);
        Assert.Equal(0, umem.ChunksInUse);
        Assert.False(vethA.HostHasXdp() || vethB.HostHasXdp());
    }

    [RootNetnsFact]
    public void A_socket_dropped_without_Dispose_is_closed_by_its_finalizer_freeing_the_queue_and_the_umem()
    {
        using var veth = new IsolatedVeth();
        var umem = new UmemProvider(1 << 20);
        var options = new XdpSocketOptions { Interface = veth.Host, FillSize = 64, RxSize = 64, TxSize = 0, CompletionSize = 64 };
        (WeakReference dropped, int fd, string inode) = OpenAndDrop(umem, options);
        umem.Dispose();
        Assert.False(umem.IsReleased); // the dropped socket still holds the area

        for (int i = 0; i < 5 && dropped.IsAlive; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        // The SafeHandle is a critical finalizer: it runs after the socket's own finalization pass.
        GC.Collect();
        GC.WaitForPendingFinalizers();

        Assert.False(dropped.IsAlive);
        Assert.NotEqual(inode, FdTarget(fd)); // closed (the number may since name another file of this process)
        Assert.True(umem.IsReleased);         // the socket's hold on the UMEM went with it
        // The kernel unbound it: the queue takes a new socket (a bound one would make this bind fail with EBUSY).
        // The kernel frees a closed socket's buffer pool in deferred work, so the queue may read busy for a moment.
        using var umem2 = new UmemProvider(1 << 20);
        var clock = Stopwatch.StartNew();
        XdpSocket? again = null;
        while (again == null)
        {
            try
            {
                again = new XdpSocket(umem2, options);
            }
            catch (XdpException e) when (e.Error == XdpError.Busy && clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                Thread.Sleep(20);
            }
        }
        using (again)
            Assert.False(XdpSocket.IsClosed(again));
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static (WeakReference Socket, int Fd, string Inode) OpenAndDrop(UmemProvider umem, XdpSocketOptions options)
    {
        var socket = new XdpSocket(umem, options);
        string inode = FdTarget(socket.Fd);
        Assert.StartsWith("socket:[", inode);
        return (new WeakReference(socket), socket.Fd, inode);
    }

    private static string FdTarget(int fd)
    {
        try
        {
            return new FileInfo($"/proc/self/fd/{fd}").LinkTarget ?? "";
        }
        catch (IOException)
        {
            return "";
        }
    }

    [RootNetnsFact]
    public void Misuse_gives_a_clear_error_and_leaves_nothing_attached()
    {
        using var veth = new IsolatedVeth();
        using var umem = new UmemProvider(1 << 20);

        var e = Assert.Throws<XdpException>(() => new XdpProgram("upx-no-such-if"));
        Assert.Equal(XdpError.NoSuchInterface, e.Error);

        // Loopback has no driver XDP hook: forcing native mode is refused, nothing gets attached.
        e = Assert.Throws<XdpException>(() => new XdpProgram("lo", XdpAttachMode.Native));
        Assert.Equal(XdpError.NotSupported, e.Error);

        // A program the verifier refuses (exit with R0 never written) fails with the verifier's log in the message.
        e = Assert.Throws<XdpException>(() => XdpProgram.LoadProgram([XdpProgram.Insn(0x95, 0, 0, 0, 0)]));
        Assert.Equal(XdpError.VerifierRejected, e.Error);
        Assert.Contains("verifier log", e.Message);
        Assert.Contains("R0", e.Message);

        e = Assert.Throws<XdpException>(() => new XdpSocket(umem, new XdpSocketOptions { Interface = veth.Host, QueueId = 1 }));
        Assert.Equal(XdpError.QueueOutOfRange, e.Error);
        Assert.Contains("queue", e.Message, StringComparison.OrdinalIgnoreCase);

        e = Assert.Throws<XdpException>(() => new XdpSocket(umem, new XdpSocketOptions { Interface = veth.Host, Mode = XdpBindMode.ZeroCopy }));
        Assert.Equal(XdpError.NotSupported, e.Error);

        using (var program = new XdpProgram(veth.Host))
        {
            e = Assert.Throws<XdpException>(() => new XdpProgram(veth.Host));
            Assert.Equal(XdpError.Busy, e.Error);
            using var first = new XdpSocket(umem, new XdpSocketOptions { Interface = veth.Host, Mode = XdpBindMode.Copy });
            e = Assert.Throws<XdpException>(() => new XdpSocket(umem, new XdpSocketOptions { Interface = veth.Host }));
            Assert.Equal(XdpError.Busy, e.Error);
        }
        Assert.False(veth.HostHasXdp());
        Assert.Equal(0, umem.ChunksInUse);
    }
}

[CollectionDefinition(nameof(XdpCollection), DisableParallelization = true)]
public sealed class XdpCollection;

public class XdpAbiLayoutTests
{
    [Theory]
    [InlineData(nameof(XdpDesc.Addr), 0)]
    [InlineData(nameof(XdpDesc.Len), 8)]
    [InlineData(nameof(XdpDesc.Options), 12)]
    public void Xdp_desc_fields_sit_at_the_kernel_offsets(string field, int offset) =>
        Assert.Equal(offset, (int)System.Runtime.InteropServices.Marshal.OffsetOf<XdpDesc>(field));

    [Fact]
    public unsafe void The_kernel_structs_have_the_kernel_sizes()
    {
        Assert.Equal(16, sizeof(XdpDesc));                                        // struct xdp_desc
        Assert.Equal(16, sizeof(UnmanagedPool.AfXdp.Interop.Sys.SockaddrXdp)); // struct sockaddr_xdp
        Assert.Equal(32, sizeof(UnmanagedPool.AfXdp.Interop.Sys.UmemReg));     // struct xdp_umem_reg with tx_metadata_len
        Assert.Equal(128, sizeof(UnmanagedPool.AfXdp.Interop.Sys.MmapOffsets)); // struct xdp_mmap_offsets
        Assert.Equal(48, sizeof(XdpStatistics));                                  // struct xdp_statistics
    }
}
