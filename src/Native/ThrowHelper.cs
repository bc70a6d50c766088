using System.Diagnostics.CodeAnalysis;

namespace UnmanagedPool.Native;

/// <summary>Cold throw sites, kept out of line so the callers stay small enough to inline.</summary>
internal static unsafe class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowNotHandedOut(NetMemRef page) =>
        throw new InvalidOperationException(page.IsNull
            ? "The page reference is null."
            : page.Value.RegionShift == 0
                // A retired region's table reads as zero (see RegionMemory): the reference outlived its region.
                ? $"Page descriptor 0x{(nint)page.Descriptor:x} belongs to a region that has been freed: the reference outlived its page."
                : $"Page 0x{(nint)page.Address:x} is not handed out (state {page.State}).");

    [DoesNotReturn]
    public static void ThrowRefUnderflow(NetMemRef page) =>
        throw new InvalidOperationException($"Page 0x{(nint)page.Address:x}: page reference count underflow (put_page on a page with no reference).");

    [DoesNotReturn]
    public static void ThrowPoolReference(NetMemRef page) =>
        throw new InvalidOperationException($"Page 0x{(nint)page.Address:x} carries PP_SIGNATURE and only its page pool's reference is left: put_page would give it to the provider behind the pool's back; give it back with PagePool.PutPage.");

    [DoesNotReturn]
    public static void ThrowForeignPage(nint address, string why) =>
        throw new InvalidOperationException($"Page 0x{address:x} {why}.");
}
