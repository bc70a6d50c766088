namespace PacketProcessor.Frames;

/// <summary>
/// A deterministic generator of Ethernet/IPv4/UDP frames: <see cref="TemplateCount"/> templates drawn from a
/// size mix with a fixed seed, spread over flows (source addresses and ports) and four destination ports
/// starting at <see cref="BasePort"/>. The same seed gives the same frames in the same order.
/// </summary>
public sealed class FrameGenerator
{
    /// <summary>Templates generated (a power of two, so a sequence number picks one with a mask).</summary>
    public const int TemplateCount = 1024;

    /// <summary>First UDP destination port; templates use BasePort..BasePort+3 in turn.</summary>
    public const ushort BasePort = 5000;

    /// <summary>Destination MAC of generated frames.</summary>
    public const ulong DstMac = 0x02_00_00_00_00_02;

    /// <summary>Source MAC of generated frames.</summary>
    public const ulong SrcMac = 0x02_00_00_00_00_01;

    private readonly byte[][] _templates = new byte[TemplateCount][];

    /// <summary>Generates the templates for <paramref name="mix"/> from <paramref name="seed"/>.</summary>
    public FrameGenerator(SizeMix mix, ulong seed = 0x9e3779b97f4a7c15UL, int malformedPerMille = 0)
    {
        ArgumentNullException.ThrowIfNull(mix);
        if (malformedPerMille is < 0 or > 1000)
            throw new ArgumentOutOfRangeException(nameof(malformedPerMille), malformedPerMille, "Malformed frames are 0..1000 per mille.");
        int totalWeight = mix.Entries.Sum(e => e.Weight);
        ulong state = seed == 0 ? 1 : seed;
        for (int i = 0; i < TemplateCount; i++)
        {
            int pick = (int)(Next(ref state) % (ulong)totalWeight);
            int size = mix.Entries[^1].Size;
            foreach ((int s, int w) in mix.Entries)
            {
                if (pick < w)
                {
                    size = s;
                    break;
                }
                pick -= w;
            }
            ulong r = Next(ref state);
            var frame = new byte[size];
            FrameBuilder.WriteUdp(frame, size, DstMac, SrcMac,
                srcIp: 0x0a000000u | (uint)(r & 0xffff), dstIp: 0x0a010001u,
                srcPort: (ushort)(1024 + (r >> 16) % 60000), dstPort: (ushort)(BasePort + (i & 3)));
            if (malformedPerMille > 0 && (int)((r >> 40) % 1000) < malformedPerMille)
                frame = Corrupt(frame, (int)(r >> 56) & 1);
            _templates[i] = frame;
        }
        MeanLength = _templates.Average(t => (double)t.Length);
    }

    /// <summary>Mean template length in bytes.</summary>
    public double MeanLength { get; }

    /// <summary>Template <paramref name="index"/> (masked to the template count).</summary>
    public byte[] Template(long index) => _templates[index & (TemplateCount - 1)];

    /// <summary>A malformed variant: truncated below an Ethernet header (kind 0) or an IPv4 header length of 4 bytes (kind 1).</summary>
    private static byte[] Corrupt(byte[] frame, int kind)
    {
        if (kind == 0)
            return frame[..10];
        frame[FrameParser.EthernetHeaderLength] = 0x41;
        return frame;
    }

    private static ulong Next(ref ulong s)
    {
        // xorshift64*: small, deterministic, good enough to spread sizes and flows.
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return s * 0x2545F4914F6CDD1DUL;
    }
}
