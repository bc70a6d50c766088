using System.Diagnostics.CodeAnalysis;
using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>Cold throw sites of fragments, packets, XDP frames and memory wrappers.</summary>
internal static unsafe class FragThrowHelper
{
    [DoesNotReturn]
    public static void ThrowFragOverRelease(NetMemRef page) =>
        throw new InvalidOperationException(
            $"Page 0x{(nint)page.Address:x}: a fragment was put more times than fragments were handed out from this page (pp_ref_count {page.Value.PpRefCount}).");

    [DoesNotReturn]
    public static void ThrowPacketNotLive() =>
        throw new InvalidOperationException("The packet was already freed (double free) or never built.");

    [DoesNotReturn]
    public static void ThrowPacketFull() =>
        throw new InvalidOperationException($"A packet holds at most {Packet.MaxFrags} fragments (MAX_SKB_FRAGS).");

    [DoesNotReturn]
    public static void ThrowPacketLive() =>
        throw new InvalidOperationException("The destination packet still holds pages: free it first.");

    [DoesNotReturn]
    public static void ThrowNotMarkedForRecycle(NetMemRef page) =>
        throw new InvalidOperationException($"Page 0x{(nint)page.Address:x} is a page-pool page holding only its pool's reference, dropped by a packet not marked for recycling (debug mode): it went back to its pool; call Packet.MarkForRecycle when the packet holds pool pages.");

    [DoesNotReturn]
    public static void ThrowNoPool(NetMemRef page) =>
        throw new InvalidOperationException($"Page 0x{(nint)page.Address:x} carries the page-pool signature but names no live pool.");

    [DoesNotReturn]
    public static void ThrowFrameReturned(nint frame) =>
        throw new InvalidOperationException($"XDP frame 0x{frame:x} was already returned (double return) or is not a frame.");

    [DoesNotReturn]
    public static void ThrowNoTailroom(int length, int frameSize) =>
        throw new InvalidOperationException($"The {length}-byte head leaves no room for the fragment list in the {frameSize}-byte frame (prepare the buffer first; its data must end {XdpBuff.SharedInfoSize} bytes before the frame's end).");

    [DoesNotReturn]
    public static void ThrowNullFrame() =>
        throw new ArgumentException("The XDP frame is null.", "frame");

    [DoesNotReturn]
    public static void ThrowOwnerDisposed() =>
        throw new ObjectDisposedException(nameof(PageMemoryManager), "The page memory was already disposed (its page reference was put).");
}
