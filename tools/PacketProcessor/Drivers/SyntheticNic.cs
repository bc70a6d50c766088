using System.Runtime.CompilerServices;
using PacketProcessor.Engine;
using PacketProcessor.Frames;

namespace PacketProcessor.Drivers;

/// <summary>
/// An in-process NIC queue model: "DMA" of frames from a deterministic generator into posted buffers. A real NIC
/// writes the frame without the CPU, and the CPU then reads the headers; so the model writes the first
/// <see cref="HeaderBytes"/> bytes of a template (Ethernet, IPv4 and UDP headers plus a sequence number in the
/// payload) and sets the frame's length, leaving the rest of the payload as the buffer holds it. Transmit counts.
/// </summary>
internal sealed unsafe class SyntheticNic : NicQueue
{
    /// <summary>Bytes of each frame the model writes (one cache line).</summary>
    public const int HeaderBytes = 64;

    /// <summary>Offset of the 8-byte sequence number (first payload bytes).</summary>
    public const int SequenceOffset = FrameBuilder.HeadersLength;

    private readonly byte[] _headers;   // TemplateCount × HeaderBytes, the first bytes of each template
    private readonly int[] _lengths;
    private long _sequence;

    public SyntheticNic(FrameGenerator generator, int queue)
    {
        _headers = GC.AllocateUninitializedArray<byte>(FrameGenerator.TemplateCount * HeaderBytes, pinned: true);
        _lengths = new int[FrameGenerator.TemplateCount];
        for (int i = 0; i < FrameGenerator.TemplateCount; i++)
        {
            byte[] t = generator.Template(i);
            t.AsSpan(0, Math.Min(t.Length, HeaderBytes)).CopyTo(_headers.AsSpan(i * HeaderBytes, HeaderBytes));
            _lengths[i] = t.Length;
        }
        // Queues start at different points of the template sequence, as flows hash to different queues.
        _sequence = (long)queue * 257;
    }

    /// <summary>Bytes transmitted.</summary>
    public long TxBytes;

    public override int Receive(Span<RxBuf> posted, int capacity)
    {
        long seq = _sequence;
        fixed (byte* headers = _headers)
        fixed (int* lengths = _lengths)
        {
            for (int i = 0; i < posted.Length; i++)
            {
                ref RxBuf b = ref Unsafe.Add(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(posted), i);
                int t = (int)seq & (FrameGenerator.TemplateCount - 1);
                int len = lengths[t];
                ref byte dst = ref b.Ptr != null ? ref *(b.Ptr + RxBuf.Headroom) : ref b.Array![RxBuf.Headroom];
                Unsafe.CopyBlockUnaligned(ref dst, ref *(headers + t * HeaderBytes), HeaderBytes);
                if (len >= SequenceOffset + 8)
                    Unsafe.WriteUnaligned(ref Unsafe.Add(ref dst, SequenceOffset), seq);
                b.Len = len <= capacity ? len : -1;
                seq++;
            }
        }
        _sequence = seq;
        return posted.Length;
    }

    public override int ReceiveMultiBuffer(Span<RxBuf> posted, int capacity, int headCapacity, int maxFrame)
    {
        long seq = _sequence;
        int i = 0;
        fixed (byte* headers = _headers)
        fixed (int* lengths = _lengths)
        {
            while (i < posted.Length)
            {
                int t = (int)seq & (FrameGenerator.TemplateCount - 1);
                int len = lengths[t];
                int segs = len > maxFrame || len <= capacity ? 1 : 1 + (len - headCapacity + capacity - 1) / capacity;
                if (i + segs > posted.Length)
                    break;
                ref RxBuf b = ref Unsafe.Add(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(posted), i);
                byte* dst = b.Ptr + RxBuf.Headroom;
                Unsafe.CopyBlockUnaligned(dst, headers + t * HeaderBytes, HeaderBytes);
                if (len >= SequenceOffset + 8)
                    Unsafe.WriteUnaligned(dst + SequenceOffset, seq);
                b.Segs = segs;
                if (len > maxFrame)
                {
                    b.Len = -1;
                }
                else if (segs == 1)
                {
                    b.Len = len;
                }
                else
                {
                    // The rest of the frame lands in the following buffers, each from its headroom on.
                    b.Len = headCapacity;
                    int left = len - headCapacity;
                    for (int k = 1; k < segs; k++)
                    {
                        ref RxBuf f = ref Unsafe.Add(ref b, k);
                        f.Len = Math.Min(left, capacity);
                        f.Segs = 0;
                        left -= f.Len;
                    }
                }
                i += segs;
                seq++;
            }
        }
        _sequence = seq;
        return i;
    }

    public override int Transmit(ReadOnlySpan<RxBuf> frames)
    {
        long bytes = 0;
        foreach (ref readonly RxBuf b in frames)
            bytes += b.Len;
        TxBytes += bytes;
        return frames.Length;
    }
}
