using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// The kernel's <c>skb_frag_t</c>: a piece of a page (netmem, offset, length) that a <see cref="Packet"/> refers
/// to. A plain value: it holds no reference by itself; the packet that stores it does.
/// </summary>
public readonly unsafe struct SkbFrag : IEquatable<SkbFrag>
{
    /// <summary>Describes <paramref name="length"/> bytes at <paramref name="offset"/> of <paramref name="page"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range does not lie inside the page.</exception>
    public SkbFrag(NetMemRef page, int offset, int length)
    {
        if (page.IsNull)
            throw new ArgumentException("The page is null.", nameof(page));
        if (offset < 0 || length < 0 || (long)offset + length > page.Size)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"Offset {offset} + length {length} must lie inside the {page.Size}-byte page.");
        Page = page;
        Offset = offset;
        Length = length;
    }

    /// <summary>The kernel's <c>skb_frag_netmem</c>: the page (head of the run) the bytes live in.</summary>
    public NetMemRef Page { get; }

    /// <summary>The kernel's <c>skb_frag_off</c>: where the bytes start in the page.</summary>
    public int Offset { get; }

    /// <summary>The kernel's <c>skb_frag_size</c>: how many bytes.</summary>
    public int Length { get; }

    /// <summary>Whether this is the empty value (no page).</summary>
    public bool IsEmpty => Page.IsNull;

    /// <summary>The kernel's <c>skb_frag_address</c>: the first byte.</summary>
    public byte* Address => Page.Address + Offset;

    /// <summary>The bytes.</summary>
    public Span<byte> AsSpan() => IsEmpty ? default : new Span<byte>(Page.Address + Offset, Length);

    /// <inheritdoc />
    public bool Equals(SkbFrag other) => Page == other.Page && Offset == other.Offset && Length == other.Length;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is SkbFrag other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Page, Offset, Length);

    /// <summary>Value equality.</summary>
    public static bool operator ==(SkbFrag left, SkbFrag right) => left.Equals(right);

    /// <summary>Value inequality.</summary>
    public static bool operator !=(SkbFrag left, SkbFrag right) => !left.Equals(right);

    /// <inheritdoc />
    public override string ToString() => IsEmpty ? "SkbFrag(empty)" : $"SkbFrag(0x{(nint)Page.Address:x}+{Offset}, {Length})";
}
