using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>Spans over pages and fragments.</summary>
public static unsafe class NetMemSpanExtensions
{
    /// <summary><paramref name="length"/> bytes at <paramref name="offset"/> of the page (a fragment's bytes).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range does not lie inside the page.</exception>
    public static Span<byte> AsSpan(this NetMemRef page, int offset, int length)
    {
        if (page.IsNull)
            throw new ArgumentException("The page is null.", nameof(page));
        if (offset < 0 || length < 0 || (long)offset + length > page.Size)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"Offset {offset} + length {length} must lie inside the {page.Size}-byte page.");
        return new Span<byte>(page.Address + offset, length);
    }

    /// <summary>The page's bytes from <paramref name="offset"/> to its end.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="offset"/> lies outside the page.</exception>
    public static Span<byte> AsSpan(this NetMemRef page, int offset) => page.AsSpan(offset, page.IsNull ? 0 : page.Size - offset);
}
