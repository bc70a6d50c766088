using System.Runtime.InteropServices;
using UnmanagedPool.Native.Interop;

namespace UnmanagedPool.Native;

/// <summary>
/// The memory behind regions, which is never unmapped: the kernel's memmap outlives the memory it describes, and
/// so does a region's descriptor table here. A retired block gives its physical pages back to the OS
/// (<c>madvise(MADV_DONTNEED)</c>, after which every byte reads as zero) but stays mapped, and is reused by the
/// next region of the same size, oldest first. So a reader holding a descriptor pointer of a region that has
/// just been freed (a racing <see cref="NetMemRef.FromAddress(void*)"/>, a <see cref="NetMemRef"/> kept past its
/// pool) reads a valid descriptor: state <see cref="PageState.Header"/>, no <c>pp_magic</c>, so it is refused as
/// "not handed out" or "not a pool page" instead of faulting. Nothing is paid on any fast path.
/// </summary>
/// <remarks>
/// The address space held is the most regions of each size alive at once; resident memory is what live regions
/// use plus one zero-page mapping per retired table read. Off Linux the table is zeroed by hand and the data
/// pages stay committed until the block is reused. A stale reference into a block that has since been reused
/// describes a page of the new region (as a stale <c>struct page</c> does in the kernel); the reuse order
/// (oldest retired first) makes that as late as the pool sizes allow.
/// </remarks>
internal static unsafe class RegionMemory
{
    private static readonly Lock s_lock = new();
    private static readonly Queue<nint>?[] s_retired = new Queue<nint>?[PageConstants.MaxRegionShift + 1];
    private static long s_retiredBytes;

    /// <summary>Bytes of address space retired and waiting for reuse.</summary>
    public static long RetiredBytes
    {
        get { lock (s_lock) return s_retiredBytes; }
    }

    /// <summary>A block of 2^<paramref name="shift"/> bytes aligned to its size: a retired one when there is one.</summary>
    /// <exception cref="OutOfMemoryException">No retired block and the allocation failed.</exception>
    public static void* Allocate(int shift)
    {
        lock (s_lock)
        {
            if (s_retired[shift] is { Count: > 0 } queue)
            {
                s_retiredBytes -= 1L << shift;
                return (void*)queue.Dequeue();
            }
        }
        nuint size = (nuint)1 << shift;
        return NativeMemory.AlignedAlloc(size, size);
    }

    /// <summary>
    /// Gives the block's physical pages back and keeps it mapped, every descriptor reading as zero (state
    /// <see cref="PageState.Header"/>, no pp_magic, no pool), for reuse by <see cref="Allocate"/>. The block must
    /// no longer be registered.
    /// </summary>
    public static void Retire(void* block, int shift)
    {
        nuint size = (nuint)1 << shift;
        bool zeroed = false;
        if (LibC.IsLinux)
        {
            // Withdraw the huge-page advice first so khugepaged does not fill the range back in.
            LibC.MAdvise(block, size, LibC.MADV_NOHUGEPAGE);
            zeroed = LibC.MAdvise(block, size, LibC.MADV_DONTNEED) == 0;
        }
        if (!zeroed)
        {
            nuint table = (nuint)NetMem.Size << (shift - PageConstants.PageShift);
            NativeMemory.Clear(block, table);
        }
        lock (s_lock)
        {
            (s_retired[shift] ??= new Queue<nint>()).Enqueue((nint)block);
            s_retiredBytes += 1L << shift;
        }
    }
}
