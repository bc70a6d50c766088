using System.Diagnostics;
using UnmanagedPool.AfXdp;
using UnmanagedPool.AfXdp.Interop;
using UnmanagedPool.Native;
using UnmanagedPool.Tests.PacketProcessor;

namespace UnmanagedPool.Tests.AfXdp;

public class XdpAttachFallbackRuleTests
{
    [Theory]
    [InlineData(Sys.EINVAL, "5.4", true)]     // no XDP links before 5.9: the kernel answers EINVAL to the attach type
    [InlineData(Sys.EINVAL, "4.19", true)]    // no BPF_LINK_CREATE at all: EINVAL to the command
    [InlineData(Sys.ENOSYS, "6.1", true)]     // no bpf(2) at all
    [InlineData(Sys.EINVAL, "5.9", false)]    // links exist: EINVAL is a real refusal
    [InlineData(Sys.EINVAL, "6.18", false)]
    [InlineData(Sys.EOPNOTSUPP, "5.4", false)] // the driver has no hook in that mode: netlink would say the same
    [InlineData(Sys.EBUSY, "5.4", false)]
    [InlineData(Sys.EPERM, "5.4", false)]
    public void Only_an_answer_that_means_no_xdp_links_falls_back_to_netlink(int errno, string kernel, bool fallsBack) =>
        Assert.Equal(fallsBack, XdpProgram.LinksMissing(errno, Version.Parse(kernel)));
}

/// <summary>XDP attached through rtnetlink (<c>IFLA_XDP</c>) on a veth pair the test creates in its own namespace.</summary>
[Collection(nameof(XdpCollection))]
public class XdpNetlinkTests
{
    private const int Count = 1000;

    /// <summary>The id of the XDP program on <paramref name="veth"/>'s host end (0: none), read with RTM_GETLINK.</summary>
    private static uint AttachedId(IsolatedVeth veth)
    {
        Assert.Equal(0, XdpNetlink.QueryProgram(XdpInterface.IndexOf(veth.Host), out uint id, out _));
        return id;
    }

    /// <summary>`ip -d link show dev HOST`.</summary>
    private static string IpShow(IsolatedVeth veth)
    {
        var psi = new ProcessStartInfo(AfPacketIntegrationTests.FindIp(), ["-d", "link", "show", "dev", veth.Host]) { RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        string text = p.StandardOutput.ReadToEnd();
        p.WaitForExit(10_000);
        return text;
    }

    [RootNetnsFact]
    public void A_program_attached_through_netlink_redirects_every_frame_to_the_socket_and_is_gone_after_Dispose()
    {
        using var veth = new IsolatedVeth();
        using var umem = new UmemProvider(16 << 20);
        var pool = new PagePool(new PagePoolOptions { MemoryProvider = umem, Name = "xdp-nl" });
        var program = new XdpProgram(new XdpProgramOptions { Interface = veth.Host, Method = XdpAttachMethod.Netlink });
        var socket = new XdpSocket(umem, new XdpSocketOptions { Interface = veth.Host, TxSize = 0 });
        var receiver = new TestReceiver(socket, pool, Count);
        try
        {
            Assert.Equal(XdpAttachMethod.Netlink, program.AttachMethod);
            Assert.Equal(-1, program.LinkFd);
            Assert.True(program.IsAttached);
            Assert.NotEqual(0u, program.ProgramId);
            Assert.Equal(program.ProgramId, AttachedId(veth));
            Assert.Contains($"prog/xdp id {program.ProgramId} ", IpShow(veth));

            program.Register(0, socket);
            receiver.ReceiveAllSentBy(veth);
        }
        finally
        {
            socket.Dispose();
            program.Dispose();
        }
        Assert.False(program.IsAttached);
        Assert.Equal(0u, AttachedId(veth));
        Assert.DoesNotContain("prog/xdp", IpShow(veth));
        Assert.False(veth.HostHasXdp());
        program.Dispose(); // a second Dispose does nothing (and never detaches a later program)
        receiver.ReturnHeld();
        pool.Dispose();
        Assert.Equal(0, umem.ChunksInUse);
    }

    [RootNetnsFact]
    public void Auto_attaches_with_a_link_on_this_kernel()
    {
        using var veth = new IsolatedVeth();
        using (var program = new XdpProgram(veth.Host))
        {
            Assert.Equal(XdpAttachMethod.Link, program.AttachMethod);
            Assert.True(program.LinkFd >= 0);
            Assert.Equal(program.ProgramId, AttachedId(veth));
        }
        Assert.Equal(0u, AttachedId(veth));
        using (var program = new XdpProgram(new XdpProgramOptions { Interface = veth.Host, Method = XdpAttachMethod.Link }))
            Assert.Equal(XdpAttachMethod.Link, program.AttachMethod);
        Assert.Equal(0u, AttachedId(veth));
    }

    [RootNetnsFact]
    public void A_netlink_attach_on_an_interface_that_has_a_program_fails_as_busy_and_leaves_that_program_attached()
    {
        using var veth = new IsolatedVeth();
        var netlink = new XdpProgramOptions { Interface = veth.Host, Method = XdpAttachMethod.Netlink };

        // Another program attached with a link.
        using (var first = new XdpProgram(new XdpProgramOptions { Interface = veth.Host, Method = XdpAttachMethod.Link }))
        {
            var e = Assert.Throws<XdpException>(() => new XdpProgram(netlink));
            Assert.Equal(XdpError.Busy, e.Error);
            Assert.Contains("netlink", e.Message);
            Assert.Equal(first.ProgramId, AttachedId(veth));
        }
        Assert.Equal(0u, AttachedId(veth));

        // Another program attached through netlink: neither method replaces it.
        using (var first = new XdpProgram(netlink))
        {
            var e = Assert.Throws<XdpException>(() => new XdpProgram(netlink));
            Assert.Equal(XdpError.Busy, e.Error);
            Assert.Contains("the kernel says", e.Message); // the extended ack's text
            Assert.Equal(first.ProgramId, AttachedId(veth));
            e = Assert.Throws<XdpException>(() => new XdpProgram(veth.Host));
            Assert.Equal(XdpError.Busy, e.Error);
            Assert.Equal(first.ProgramId, AttachedId(veth));
            Assert.True(first.IsAttached);
        }
        Assert.Equal(0u, AttachedId(veth));
    }

    [RootNetnsFact]
    public void Dispose_of_a_netlink_program_leaves_a_program_attached_since_by_someone_else_in_place()
    {
        using var veth = new IsolatedVeth();
        var netlink = new XdpProgramOptions { Interface = veth.Host, Method = XdpAttachMethod.Netlink };
        var ours = new XdpProgram(netlink);
        try
        {
            // Someone removes it (as `ip link set dev X xdp off` would) and attaches theirs.
            Assert.Equal(0, XdpNetlink.SetXdp(ours.IfIndex, -1, 0, -1, out _));
            using var theirs = new XdpProgram(netlink);
            ours.Dispose();
            Assert.Equal(theirs.ProgramId, AttachedId(veth));
        }
        finally
        {
            ours.Dispose();
        }
        Assert.Equal(0u, AttachedId(veth));
    }

    [RootNetnsFact]
    public void A_netlink_program_dropped_without_Dispose_is_detached_by_its_finalizer()
    {
        using var veth = new IsolatedVeth();
        (WeakReference dropped, uint id) = AttachAndDrop(veth.Host);
        Assert.Equal(id, AttachedId(veth));
        for (int i = 0; i < 5 && (dropped.IsAlive || AttachedId(veth) != 0); i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.False(dropped.IsAlive);
        Assert.Equal(0u, AttachedId(veth));
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static (WeakReference, uint) AttachAndDrop(string name)
    {
        var program = new XdpProgram(new XdpProgramOptions { Interface = name, Method = XdpAttachMethod.Netlink });
        return (new WeakReference(program), program.ProgramId);
    }
}
