using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace UnmanagedPool.Native;

/// <summary>
/// Registry of live regions, readable without locks: a two-level radix table over the 47-bit user address
/// space at 64 KiB granularity (the smallest region). An entry holds the region base with log2(region size) in
/// its low bits, so <see cref="Lookup"/> costs two dependent loads and never touches memory outside a live
/// region. Second-level tables are allocated on first use and never freed, so a reader can never follow a
/// pointer into freed memory.
/// </summary>
internal static unsafe class RegionRegistry
{
    private const int ChunkShift = PageConstants.MinRegionShift;     // 64 KiB chunks
    private const int L2Bits = 32 - ChunkShift;                        // 16 bits: one L2 table covers 4 GiB
    private const int L2Entries = 1 << L2Bits;
    private const int L1Entries = 1 << 15;                             // 47-bit user space / 4 GiB
    private const nuint EntryShiftMask = 0xFF;

    // L1: L1Entries pointers to L2 tables of L2Entries nuint each. Allocated once, lives for the process.
    private static readonly nuint** s_l1 = (nuint**)NativeMemory.AllocZeroed((nuint)L1Entries, (nuint)sizeof(nuint*));
    private static readonly Lock s_writeLock = new();
    private static readonly ConcurrentDictionary<nint, PageRegion> s_regions = new();

    /// <summary>Number of live regions in the process.</summary>
    public static int Count => s_regions.Count;

    /// <summary>Finds the descriptor slot for <paramref name="address"/>, or null when no live region holds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static NetMem* Lookup(nuint address)
    {
        nuint l1Index = address >> 32;
        if (l1Index >= L1Entries)
            return null;
        // Volatile: pairs with the release in Register so a reader that sees the L2 pointer sees the zeroed table.
        nuint* l2 = (nuint*)Volatile.Read(ref Unsafe.AsRef<nint>(s_l1 + l1Index));
        if (l2 == null)
            return null;
        nuint entry = l2[(address >> ChunkShift) & (L2Entries - 1)];
        if (entry == 0)
            return null;
        nuint regionBase = entry & ~(nuint)((1 << ChunkShift) - 1);
        nuint index = (address - regionBase) >> PageConstants.PageShift;
        return (NetMem*)regionBase + index;
    }

    /// <summary>
    /// Whether <paramref name="descriptor"/> points exactly at a descriptor slot of a live region (not inside a
    /// page, not misaligned); yields the region base and shift.
    /// </summary>
    public static bool IsDescriptor(NetMem* descriptor, out nuint regionBase, out int shift)
    {
        regionBase = 0;
        shift = 0;
        nuint address = (nuint)descriptor;
        nuint l1Index = address >> 32;
        if (l1Index >= L1Entries)
            return false;
        nuint* l2 = (nuint*)Volatile.Read(ref Unsafe.AsRef<nint>(s_l1 + l1Index));
        if (l2 == null)
            return false;
        nuint entry = l2[(address >> ChunkShift) & (L2Entries - 1)];
        if (entry == 0)
            return false;
        regionBase = entry & ~(nuint)((1 << ChunkShift) - 1);
        shift = (int)(entry & EntryShiftMask);
        nuint offset = address - regionBase;
        return offset % (nuint)NetMem.Size == 0 && offset / (nuint)NetMem.Size < ((nuint)1 << (shift - PageConstants.PageShift));
    }

    /// <summary>The managed region object whose base is <paramref name="regionBase"/>, or null.</summary>
    public static PageRegion? Find(nint regionBase) => s_regions.TryGetValue(regionBase, out var r) ? r : null;

    public static void Register(PageRegion region)
    {
        nuint regionBase = (nuint)region.Base;
        nuint entry = regionBase | ((nuint)region.Shift & EntryShiftMask);
        int chunks = 1 << (region.Shift - ChunkShift);
        lock (s_writeLock)
        {
            nuint l1Index = regionBase >> 32;
            if (l1Index >= L1Entries)
                throw new InvalidOperationException($"Region at 0x{regionBase:x} lies outside the 47-bit user address space.");
            nuint* l2 = s_l1[l1Index];
            if (l2 == null)
            {
                l2 = (nuint*)NativeMemory.AllocZeroed((nuint)L2Entries, (nuint)sizeof(nuint));
                // Volatile: publishes the zeroed table before any reader can follow the pointer.
                Volatile.Write(ref Unsafe.AsRef<nint>(s_l1 + l1Index), (nint)l2);
            }
            nuint first = (regionBase >> ChunkShift) & (L2Entries - 1);
            for (int i = 0; i < chunks; i++)
                l2[first + (nuint)i] = entry;
            s_regions[region.Base] = region;
        }
    }

    public static void Unregister(PageRegion region)
    {
        nuint regionBase = (nuint)region.Base;
        int chunks = 1 << (region.Shift - ChunkShift);
        lock (s_writeLock)
        {
            nuint* l2 = s_l1[regionBase >> 32];
            if (l2 != null)
            {
                nuint first = (regionBase >> ChunkShift) & (L2Entries - 1);
                for (int i = 0; i < chunks; i++)
                    l2[first + (nuint)i] = 0;
            }
            s_regions.TryRemove(region.Base, out _);
        }
    }
}
