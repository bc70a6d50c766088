using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace PacketProcessor.Frames;

/// <summary>What <see cref="FrameParser.ParseUdp(ReadOnlySpan{byte}, int, out ushort)"/> found in a frame.</summary>
public enum ParseResult
{
    /// <summary>A well-formed Ethernet/IPv4/UDP frame (first fragment).</summary>
    Udp,

    /// <summary>Well-formed as far as it was read, but not IPv4/UDP (ARP, IPv6, TCP, a later IP fragment, ...).</summary>
    Other,

    /// <summary>Truncated or inconsistent headers: shorter than an Ethernet header, a wrong IP header length, lengths past the frame.</summary>
    Malformed,
}

/// <summary>Bounds-checked reads of Ethernet, IPv4 and UDP headers. Every read is inside the span.</summary>
public static class FrameParser
{
    /// <summary>Ethernet header bytes (destination, source, EtherType).</summary>
    public const int EthernetHeaderLength = 14;

    /// <summary>Smallest IPv4 header.</summary>
    public const int Ipv4MinHeaderLength = 20;

    /// <summary>UDP header bytes.</summary>
    public const int UdpHeaderLength = 8;

    /// <summary>EtherType of IPv4.</summary>
    public const ushort EtherTypeIpv4 = 0x0800;

    /// <summary>IP protocol number of UDP.</summary>
    public const byte ProtocolUdp = 17;

    /// <summary>
    /// Reads the headers of an Ethernet/IPv4/UDP frame. <paramref name="dstPort"/> is the UDP destination port
    /// when the result is <see cref="ParseResult.Udp"/>, else 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ParseResult ParseUdp(ReadOnlySpan<byte> frame, out ushort dstPort) => ParseUdp(frame, frame.Length, out dstPort);

    /// <summary>
    /// Reads the headers of an Ethernet/IPv4/UDP frame whose first bytes are <paramref name="head"/> and whose
    /// whole length is <paramref name="frameLength"/> (a multi-buffer frame: the rest lies in fragments; the
    /// kernel's <c>xdp_get_buff_len</c>). The headers must lie in the head, as a program reads them between
    /// <c>data</c> and <c>data_end</c>; the IP and UDP lengths are checked against the whole frame.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ParseResult ParseUdp(ReadOnlySpan<byte> head, int frameLength, out ushort dstPort)
    {
        dstPort = 0;
        if (head.Length < EthernetHeaderLength)
            return ParseResult.Malformed;
        if (BinaryPrimitives.ReadUInt16BigEndian(head.Slice(12, 2)) != EtherTypeIpv4)
            return ParseResult.Other;
        ReadOnlySpan<byte> ip = head[EthernetHeaderLength..];
        int ipLength = Math.Max(frameLength, head.Length) - EthernetHeaderLength;
        if (ip.Length < Ipv4MinHeaderLength)
            return ParseResult.Malformed;
        byte versionIhl = ip[0];
        int ihl = (versionIhl & 0x0f) * 4;
        int totalLength = BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(2, 2));
        // Version 4, header of 20..60 bytes inside the head, total length covering the header and inside the
        // frame (Ethernet padding may follow it).
        if ((versionIhl >> 4) != 4 || ihl < Ipv4MinHeaderLength || ihl > ip.Length
            || totalLength < ihl || totalLength > ipLength)
            return ParseResult.Malformed;
        if (ip[9] != ProtocolUdp)
            return ParseResult.Other;
        // A later fragment carries no UDP header.
        if ((BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(6, 2)) & 0x1fff) != 0)
            return ParseResult.Other;
        int udpRoom = totalLength - ihl;
        if (udpRoom < UdpHeaderLength || ip.Length - ihl < UdpHeaderLength)
            return ParseResult.Malformed;
        ReadOnlySpan<byte> udp = ip.Slice(ihl, UdpHeaderLength);
        int udpLength = BinaryPrimitives.ReadUInt16BigEndian(udp.Slice(4, 2));
        if (udpLength < UdpHeaderLength || udpLength > udpRoom)
            return ParseResult.Malformed;
        dstPort = BinaryPrimitives.ReadUInt16BigEndian(udp.Slice(2, 2));
        return ParseResult.Udp;
    }

    /// <summary>Swaps the destination and source MAC addresses in place. The frame must hold an Ethernet header.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SwapMacs(Span<byte> frame)
    {
        ref byte p = ref frame[EthernetHeaderLength - 1]; // one bounds check for the 14 bytes
        p = ref Unsafe.Subtract(ref p, EthernetHeaderLength - 1);
        ulong dst = Unsafe.ReadUnaligned<uint>(ref p) | (ulong)Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref p, 4)) << 32;
        uint src4 = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref p, 6));
        ushort src2 = Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref p, 10));
        Unsafe.WriteUnaligned(ref p, src4);
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref p, 4), src2);
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref p, 6), (uint)dst);
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref p, 10), (ushort)(dst >> 32));
    }
}
