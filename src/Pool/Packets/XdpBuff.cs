namespace UnmanagedPool;

/// <summary>
/// The kernel's <c>struct xdp_buff</c>: the buffer an XDP program sees, from <see cref="DataHardStart"/> (start
/// of the frame) through the headroom, the metadata and the packet data to <see cref="DataEnd"/>. A value
/// living on the receive path's stack; <see cref="ToFrame"/> turns it into an <see cref="XdpFrame"/> whose
/// descriptor is written into the headroom, as the kernel does.
/// </summary>
public unsafe struct XdpBuff
{
    /// <summary>The kernel's <c>data_hard_start</c>: first byte of the frame.</summary>
    public byte* DataHardStart;

    /// <summary>The kernel's <c>data</c>: first byte of the packet.</summary>
    public byte* Data;

    /// <summary>The kernel's <c>data_end</c>: one past the last byte of the packet.</summary>
    public byte* DataEnd;

    /// <summary>The kernel's <c>data_meta</c>: start of the metadata before <see cref="Data"/>; <c>Data + 1</c> when there is none.</summary>
    public byte* DataMeta;

    /// <summary>The kernel's <c>frame_sz</c>: bytes of the whole frame from <see cref="DataHardStart"/>.</summary>
    public int FrameSize;

    /// <summary>The kernel's <c>rxq-&gt;mem</c>.</summary>
    public XdpMemInfo Mem;

    /// <summary>The kernel's <c>xdp_init_buff</c>.</summary>
    public void Init(int frameSize, XdpMemInfo mem)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(frameSize);
        FrameSize = frameSize;
        Mem = mem;
    }

    /// <summary>The kernel's <c>xdp_prepare_buff</c>: data starts <paramref name="headroom"/> bytes after <paramref name="hardStart"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Headroom plus data do not fit in <see cref="FrameSize"/>.</exception>
    public void Prepare(byte* hardStart, int headroom, int dataLength, bool metaValid)
    {
        if (hardStart == null)
            throw new ArgumentNullException(nameof(hardStart));
        if (headroom < 0 || dataLength < 0 || (long)headroom + dataLength > FrameSize)
            throw new ArgumentOutOfRangeException(nameof(dataLength), dataLength, $"Headroom {headroom} + data {dataLength} must fit in the {FrameSize}-byte frame (call Init first).");
        byte* data = hardStart + headroom;
        DataHardStart = hardStart;
        Data = data;
        DataEnd = data + dataLength;
        DataMeta = metaValid ? data : data + 1;
    }

    /// <summary>Packet bytes: <c>DataEnd - Data</c>.</summary>
    public readonly int Length => (int)(DataEnd - Data);

    /// <summary>Headroom bytes: <c>Data - DataHardStart</c>.</summary>
    public readonly int Headroom => (int)(Data - DataHardStart);

    /// <summary>Metadata bytes (0 when none): <c>Data - DataMeta</c>, clamped at 0.</summary>
    public readonly int MetaSize => Data - DataMeta > 0 ? (int)(Data - DataMeta) : 0;

    /// <summary>The packet bytes.</summary>
    public readonly Span<byte> AsSpan() => new(Data, Length);

    /// <summary>
    /// The kernel's <c>xdp_convert_buff_to_frame</c>: writes the frame descriptor at <see cref="DataHardStart"/>
    /// and returns it, or <see cref="XdpFrame.Null"/> when the headroom (less the metadata) cannot hold it, or the
    /// data runs past the frame.
    /// </summary>
    public readonly XdpFrame ToFrame()
    {
        int headroom = Headroom;
        int metasize = MetaSize;
        if (DataHardStart == null || headroom - metasize < XdpFrame.DescriptorSize || DataEnd > DataHardStart + FrameSize)
            return XdpFrame.Null;
        var f = (XdpFrameDescriptor*)DataHardStart;
        f->Data = Data;
        f->Len = (uint)Length;
        f->Headroom = (uint)(headroom - XdpFrame.DescriptorSize);
        f->MetaSize = (uint)metasize;
        f->FrameSize = (uint)FrameSize;
        f->MemType = (uint)Mem.Type;
        // Volatile: the state word goes last, so a frame seen live on another thread has its fields written.
        Volatile.Write(ref f->State, XdpFrameDescriptor.Live);
        return new XdpFrame(f);
    }
}
