using PacketProcessor;
using PacketProcessor.Programs;

namespace UnmanagedPool.Tests.PacketProcessor;

public class ProgramVerdictTests
{
    private static Verdict Run<T>(ref T program, byte[] frame, int queue = 0, int queues = 1) where T : struct, IXdpProgram
    {
        var ctx = new XdpContext { IngressQueue = queue, QueueCount = queues, RedirectQueue = -1 };
        return program.Run(frame, ref ctx);
    }

    [Fact]
    public void Drop_drops_a_udp_frame_and_a_non_ip_frame()
    {
        var p = new DropProgram();
        Assert.Equal(Verdict.Drop, Run(ref p, Frames.Udp()));
        Assert.Equal(Verdict.Drop, Run(ref p, (byte[])Frames.NotUdp().First()[1]));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10)]
    [InlineData(13)]
    public void Every_program_aborts_a_frame_shorter_than_an_ethernet_header(int length)
    {
        byte[] runt = new byte[length];
        var drop = new DropProgram();
        var l2 = new L2FwdProgram();
        var filter = new UdpFilterProgram(5000);
        var redirect = new RedirectProgram();
        var count = new CountProgram(0);
        Assert.Equal(Verdict.Aborted, Run(ref drop, runt));
        Assert.Equal(Verdict.Aborted, Run(ref l2, runt));
        Assert.Equal(Verdict.Aborted, Run(ref filter, runt));
        Assert.Equal(Verdict.Aborted, Run(ref redirect, runt));
        Assert.Equal(Verdict.Aborted, Run(ref count, runt));
    }

    [Fact]
    public void L2fwd_transmits_with_the_mac_addresses_swapped()
    {
        var p = new L2FwdProgram();
        byte[] f = Frames.Udp();
        Assert.Equal(Verdict.Tx, Run(ref p, f));
        Assert.Equal(Frames.Udp()[6..12], f[0..6]);
        Assert.Equal(Frames.Udp()[0..6], f[6..12]);
    }

    [Fact]
    public void Udp_filter_passes_its_port_and_drops_other_ports_and_protocols()
    {
        var p = new UdpFilterProgram(5001);
        Assert.Equal(Verdict.Pass, Run(ref p, Frames.Udp(5001)));
        Assert.Equal(Verdict.Drop, Run(ref p, Frames.Udp(5000)));
        foreach (object[] other in Frames.NotUdp())
            Assert.Equal(Verdict.Drop, Run(ref p, (byte[])other[1]));
        Assert.Equal(1, p.Matched);
    }

    [Theory]
    [MemberData(nameof(Frames.Malformed), MemberType = typeof(Frames))]
    public void Udp_filter_and_count_abort_malformed_frames_and_match_nothing(string name, byte[] frame)
    {
        var filter = new UdpFilterProgram(5000);
        var count = new CountProgram(0);
        Assert.True(Run(ref filter, frame) == Verdict.Aborted, name);
        Assert.True(Run(ref count, frame) == Verdict.Aborted, name);
        Assert.Equal(0, filter.Matched);
        Assert.Equal(0, count.Matched);
    }

    [Theory]
    [InlineData(0, 2, 1)]
    [InlineData(1, 2, 0)]
    [InlineData(0, 1, 0)]
    [InlineData(2, 4, 3)]
    public void Redirect_sends_each_frame_to_the_next_queue(int queue, int queues, int expected)
    {
        var p = new RedirectProgram();
        var ctx = new XdpContext { IngressQueue = queue, QueueCount = queues, RedirectQueue = -1 };
        Assert.Equal(Verdict.Redirect, p.Run(Frames.Udp(), ref ctx));
        Assert.Equal(expected, ctx.RedirectQueue);
    }

    [Fact]
    public void Count_passes_every_well_formed_frame_and_counts_udp_to_its_port()
    {
        var p = new CountProgram(7000);
        Assert.Equal(Verdict.Pass, Run(ref p, Frames.Udp(7000)));
        Assert.Equal(Verdict.Pass, Run(ref p, Frames.Udp(7000, 1518)));
        Assert.Equal(Verdict.Pass, Run(ref p, Frames.Udp(7001)));
        foreach (object[] other in Frames.NotUdp())
            Assert.Equal(Verdict.Pass, Run(ref p, (byte[])other[1]));
        Assert.Equal(2, p.Matched);
    }

    [Fact]
    public void Count_without_a_port_counts_every_udp_frame()
    {
        var p = new CountProgram(0);
        Run(ref p, Frames.Udp(1));
        Run(ref p, Frames.Udp(65535));
        Run(ref p, (byte[])Frames.NotUdp().First()[1]);
        Assert.Equal(2, p.Matched);
    }

    [Theory]
    [InlineData("drop", ProgramKind.Drop)]
    [InlineData("L2FWD", ProgramKind.L2Fwd)]
    [InlineData(" udp-filter ", ProgramKind.UdpFilter)]
    [InlineData("redirect", ProgramKind.Redirect)]
    [InlineData("count", ProgramKind.Count)]
    public void Program_names_parse_to_their_kind(string name, ProgramKind kind)
    {
        Assert.True(ProgramNames.TryParse(name, out ProgramKind parsed));
        Assert.Equal(kind, parsed);
    }

    [Theory]
    [InlineData("")]
    [InlineData(null)]
    [InlineData("forward")]
    public void An_unknown_program_name_does_not_parse(string? name)
    {
        Assert.False(ProgramNames.TryParse(name, out _));
    }
}
