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
    /// A block of 2^<paramref name="shift"/> bytes aligned to its size and backed by explicit huge pages
    /// (<c>MAP_HUGETLB</c>, the system's default huge page size), or null when the system cannot give them: none
    /// configured (<c>vm.nr_hugepages</c> 0) or too few free (ENOMEM), a block smaller than one huge page, or not
    /// Linux. <paramref name="errno"/> says why (0 when the block is too small to try).
    /// </summary>
    public static void* AllocateHugeTlb(int shift, out int errno)
    {
        errno = 0;
        nuint size = (nuint)1 << shift;
        long hugePage = HugePageSize;
        if (!LibC.IsLinux || hugePage <= 0 || (long)size < hugePage)
            return null;
        // Reserve twice the size without memory, place the huge-page mapping over its aligned half (MAP_FIXED
        // replaces that part of the reservation), then give back the two ends.
        nint reserve = LibC.MMap(0, size * 2, LibC.PROT_NONE, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS | LibC.MAP_NORESERVE, -1, 0);
        if (reserve == LibC.MAP_FAILED)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        nint aligned = (nint)(((nuint)reserve + size - 1) & ~(size - 1));
        nint block = LibC.MMap(aligned, size, LibC.PROT_READ | LibC.PROT_WRITE,
            LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS | LibC.MAP_FIXED | LibC.MAP_HUGETLB, -1, 0);
        if (block == LibC.MAP_FAILED)
        {
            errno = Marshal.GetLastPInvokeError();
            LibC.MUnmap(reserve, size * 2);
            return null;
        }
        if (aligned != reserve)
            LibC.MUnmap(reserve, (nuint)(aligned - reserve));
        nint end = aligned + (nint)size;
        nint reserveEnd = reserve + (nint)(size * 2);
        if (end != reserveEnd)
            LibC.MUnmap(end, (nuint)(reserveEnd - end));
        return (void*)block;
    }

    /// <summary>The system's default huge page size in bytes (<c>Hugepagesize</c> in /proc/meminfo), or 0.</summary>
    public static long HugePageSize => s_hugePageSize.Value;

    private static readonly Lazy<long> s_hugePageSize = new(ReadHugePageSize);

    private static long ReadHugePageSize()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
            {
                if (!line.StartsWith("Hugepagesize:", StringComparison.Ordinal))
                    continue;
                string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return parts.Length >= 2 && long.TryParse(parts[1], System.Globalization.CultureInfo.InvariantCulture, out long kib) ? kib << 10 : 0;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return 0;
    }

    /// <summary>
    /// Retires a block from <see cref="AllocateHugeTlb"/>: ordinary zero pages are mapped over it in one step
    /// (<c>MAP_FIXED</c>, so the range is never unmapped and every descriptor reads as zero), the huge pages go back
    /// to the system's pool, and the block joins the ordinary ones for reuse by <see cref="Allocate"/>.
    /// </summary>
    public static void RetireHugeTlb(void* block, int shift)
    {
        nuint size = (nuint)1 << shift;
        nint replaced = LibC.MMap((nint)block, size, LibC.PROT_READ | LibC.PROT_WRITE,
            LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS | LibC.MAP_FIXED | LibC.MAP_NORESERVE, -1, 0);
        if (replaced == LibC.MAP_FAILED)
        {
            // Keep the huge pages mapped (never unmapped) with a zeroed table; the block is not reused.
            nuint table = (nuint)NetMem.Size << (shift - PageConstants.PageShift);
            NativeMemory.Clear(block, table);
            return;
        }
        lock (s_lock)
        {
            (s_retired[shift] ??= new Queue<nint>()).Enqueue((nint)block);
            s_retiredBytes += 1L << shift;
        }
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
