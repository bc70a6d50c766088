using PacketProcessor.Frames;

namespace UnmanagedPool.Tests.PacketProcessor;

public class FrameParserTests
{
    [Fact]
    public void A_built_udp_frame_parses_with_its_port_and_a_valid_ip_checksum()
    {
        byte[] f = Frames.Udp(dstPort: 4242, length: 128);
        Assert.Equal(ParseResult.Udp, FrameParser.ParseUdp(f, out ushort port));
        Assert.Equal(4242, port);
        Assert.Equal(0, FrameBuilder.Ipv4Checksum(f.AsSpan(14, 20)));
    }

    [Fact]
    public void Ethernet_padding_after_the_ip_total_length_is_accepted()
    {
        byte[] f = new byte[80];
        Frames.Udp(length: 64).CopyTo(f, 0);
        Assert.Equal(ParseResult.Udp, FrameParser.ParseUdp(f, out _));
    }

    [Theory]
    [MemberData(nameof(Frames.Malformed), MemberType = typeof(Frames))]
    public void A_malformed_frame_is_reported_malformed_without_reading_past_it(string name, byte[] frame)
    {
        Assert.True(FrameParser.ParseUdp(frame, out ushort port) == ParseResult.Malformed, name);
        Assert.Equal(0, port);
    }

    [Theory]
    [MemberData(nameof(Frames.NotUdp), MemberType = typeof(Frames))]
    public void A_well_formed_frame_that_is_not_udp_is_reported_other(string name, byte[] frame)
    {
        Assert.True(FrameParser.ParseUdp(frame, out _) == ParseResult.Other, name);
    }

    [Fact]
    public void Swapping_macs_exchanges_destination_and_source_and_leaves_the_rest()
    {
        byte[] f = Frames.Udp();
        byte[] before = (byte[])f.Clone();
        FrameParser.SwapMacs(f);
        Assert.Equal(before[6..12], f[0..6]);
        Assert.Equal(before[0..6], f[6..12]);
        Assert.Equal(before[12..], f[12..]);
    }

    [Fact]
    public void Swapping_macs_on_a_runt_throws_instead_of_writing_past_it()
    {
        Assert.Throws<IndexOutOfRangeException>(() => FrameParser.SwapMacs(new byte[13]));
    }
}
