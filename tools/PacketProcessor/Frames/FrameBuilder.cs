using System.Buffers.Binary;

namespace PacketProcessor.Frames;

/// <summary>Writes Ethernet/IPv4/UDP frames (IPv4 header checksum filled in, UDP checksum 0 as IPv4 allows).</summary>
public static class FrameBuilder
{
    /// <summary>Bytes of the Ethernet, IPv4 and UDP headers together.</summary>
    public const int HeadersLength = FrameParser.EthernetHeaderLength + FrameParser.Ipv4MinHeaderLength + FrameParser.UdpHeaderLength;

    /// <summary>Smallest frame this builder writes (the Ethernet minimum without FCS is 60; 64 is the usual test size).</summary>
    public const int MinFrameLength = 60;

    /// <summary>Largest frame: 1500-byte IP MTU plus the Ethernet header, and 4 bytes of FCS the NIC would strip.</summary>
    public const int MaxFrameLength = 1518;

    /// <summary>
    /// Largest jumbo frame (9000-byte IP MTU, counted as <see cref="MaxFrameLength"/> is): the synthetic NIC
    /// receives frames longer than <see cref="MaxFrameLength"/> only with <c>--mtu</c>, as multi-buffer frames.
    /// </summary>
    public const int MaxJumboFrameLength = 9018;

    /// <summary>Bytes a frame may have beyond the IP MTU: the Ethernet header and 4 bytes of FCS.</summary>
    public const int MtuOverhead = MaxFrameLength - 1500;

    /// <summary>
    /// Writes a UDP frame of <paramref name="frameLength"/> bytes into <paramref name="frame"/> (which must hold it):
    /// headers, then a payload of a repeating byte pattern. Returns the frame length.
    /// </summary>
    public static int WriteUdp(Span<byte> frame, int frameLength, ulong dstMac, ulong srcMac, uint srcIp, uint dstIp, ushort srcPort, ushort dstPort)
    {
        if (frameLength < HeadersLength || frameLength > frame.Length)
            throw new ArgumentOutOfRangeException(nameof(frameLength), frameLength, $"A UDP frame is {HeadersLength}..{frame.Length} bytes here.");
        WriteMac(frame[0..6], dstMac);
        WriteMac(frame[6..12], srcMac);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], FrameParser.EtherTypeIpv4);
        Span<byte> ip = frame[FrameParser.EthernetHeaderLength..frameLength];
        int ipLength = ip.Length;
        ip[0] = 0x45;
        ip[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)ipLength);
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 0);      // identification
        BinaryPrimitives.WriteUInt16BigEndian(ip[6..], 0x4000); // don't fragment
        ip[8] = 64;
        ip[9] = FrameParser.ProtocolUdp;
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], srcIp);
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], dstIp);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], Ipv4Checksum(ip[..FrameParser.Ipv4MinHeaderLength]));
        Span<byte> udp = ip[FrameParser.Ipv4MinHeaderLength..];
        BinaryPrimitives.WriteUInt16BigEndian(udp, srcPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], dstPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)udp.Length);
        BinaryPrimitives.WriteUInt16BigEndian(udp[6..], 0);
        Span<byte> payload = udp[FrameParser.UdpHeaderLength..];
        for (int i = 0; i < payload.Length; i++)
            payload[i] = (byte)i;
        return frameLength;
    }

    /// <summary>The one's-complement checksum of an IPv4 header (its checksum field read as written).</summary>
    public static ushort Ipv4Checksum(ReadOnlySpan<byte> header)
    {
        uint sum = 0;
        for (int i = 0; i + 1 < header.Length; i += 2)
            sum += BinaryPrimitives.ReadUInt16BigEndian(header[i..]);
        while (sum > 0xffff)
            sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }

    private static void WriteMac(Span<byte> dst, ulong mac)
    {
        for (int i = 0; i < 6; i++)
            dst[i] = (byte)(mac >> (8 * (5 - i)));
    }
}
