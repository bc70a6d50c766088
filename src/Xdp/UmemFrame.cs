using UnmanagedPool.Native;

namespace UnmanagedPool.AfXdp;

/// <summary>A frame in a UMEM chunk: the chunk's page, where the frame starts in it, and its length.</summary>
public readonly unsafe struct UmemFrame
{
    /// <summary>Creates a frame description.</summary>
    public UmemFrame(NetMemRef page, int offset, int length)
    {
        Page = page;
        Offset = offset;
        Length = length;
    }

    /// <summary>The chunk (a pool page of the UMEM).</summary>
    public NetMemRef Page { get; }

    /// <summary>Offset of the frame's first byte in the chunk (the headroom before it).</summary>
    public int Offset { get; }

    /// <summary>Length of the frame in bytes.</summary>
    public int Length { get; }

    /// <summary>The frame's bytes.</summary>
    public Span<byte> Data => new((byte*)Page.Address + Offset, Length);
}
