using System.Buffers.Binary;
using PacketProcessor.Frames;

namespace UnmanagedPool.Tests.PacketProcessor;

/// <summary>Crafted frames for the program and parser tests.</summary>
internal static class Frames
{
    public const ulong Dst = 0x02_aa_aa_aa_aa_aa;
    public const ulong Src = 0x02_bb_bb_bb_bb_bb;

    public static byte[] Udp(ushort dstPort = 5000, int length = 64)
    {
        var f = new byte[length];
        FrameBuilder.WriteUdp(f, length, Dst, Src, 0x0a000001, 0x0a000002, 1234, dstPort);
        return f;
    }

    public static byte[] With(byte[] frame, Action<byte[]> change)
    {
        byte[] copy = (byte[])frame.Clone();
        change(copy);
        return copy;
    }

    private const int Ip = FrameParser.EthernetHeaderLength;
    private const int UdpAt = Ip + FrameParser.Ipv4MinHeaderLength;

    /// <summary>Malformed frames by name: each must be aborted by a parsing program.</summary>
    public static IEnumerable<object[]> Malformed()
    {
        byte[] ok = Udp();
        yield return ["empty", Array.Empty<byte>()];
        yield return ["10-byte runt", ok[..10]];
        yield return ["13 bytes, one short of an Ethernet header", ok[..13]];
        yield return ["Ethernet header alone with EtherType IPv4", ok[..14]];
        yield return ["IPv4 header cut at 19 bytes", ok[..(Ip + 19)]];
        yield return ["IHL 4 (16-byte header)", With(ok, f => f[Ip] = 0x44)];
        yield return ["IHL 0", With(ok, f => f[Ip] = 0x40)];
        yield return ["IHL 15 past the frame end", With(ok[..(Ip + 40)], f => f[Ip] = 0x4f)];
        yield return ["IP version 6 under EtherType IPv4", With(ok, f => f[Ip] = 0x65)];
        yield return ["total length past the frame", With(ok, f => BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(Ip + 2), 1400))];
        yield return ["total length below the header length", With(ok, f => BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(Ip + 2), 12))];
        yield return ["UDP header cut short", With(ok[..(UdpAt + 5)], f => BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(Ip + 2), 25))];
        yield return ["UDP length below 8", With(ok, f => BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(UdpAt + 4), 4))];
        yield return ["UDP length past the IP payload", With(ok, f => BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(UdpAt + 4), 900))];
    }

    /// <summary>Well-formed frames that are not IPv4/UDP.</summary>
    public static IEnumerable<object[]> NotUdp()
    {
        byte[] ok = Udp();
        yield return ["ARP", With(ok, f => BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x0806))];
        yield return ["IPv6", With(ok, f => BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x86dd))];
        yield return ["TCP", With(ok, f => f[Ip + 9] = 6)];
        yield return ["a later IP fragment", With(ok, f => BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(Ip + 6), 0x0010))];
    }
}
