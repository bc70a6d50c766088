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
/// <remarks>
/// An area registered here (a <see cref="PageRegion"/>, or any other owner's memory through
/// <see cref="Register(nint, int, object)"/>) is 2^shift bytes aligned to its size, with its descriptor table at its
/// base: descriptor <c>i</c> describes page <c>i</c>, and the table's own pages are marked
/// <see cref="PageState.Header"/>. Its owner must keep the table mapped and readable after
/// <see cref="Unregister(nint, int)"/> (retire it with <see cref="RegionMemory.Retire"/>, or keep it for the life of
/// the process) with state and pp_magic cleared, so that a reader that looked the area up just before it went
/// reads a descriptor it refuses, never unmapped memory.
/// </remarks>
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
    private static readonly ConcurrentDictionary<nint, object> s_regions = new();

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
    public static PageRegion? Find(nint regionBase) => FindOwner(regionBase) as PageRegion;

    /// <summary>The owner registered for the area whose base is <paramref name="areaBase"/>, or null.</summary>
    public static object? FindOwner(nint areaBase) => s_regions.TryGetValue(areaBase, out var r) ? r : null;

    /// <summary>Registers a region (its owner object is the region itself).</summary>
    public static void Register(PageRegion region) => Register(region.Base, region.Shift, region);

    /// <summary>Unregisters a region.</summary>
    public static void Unregister(PageRegion region) => Unregister(region.Base, region.Shift);

    /// <summary>
    /// Registers an area of 2^<paramref name="shift"/> bytes at <paramref name="areaBase"/> (aligned to its size,
    /// descriptor table at its base, see the remarks on the class) for <see cref="Lookup"/>, with
    /// <paramref name="owner"/> returned by <see cref="FindOwner"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A shift outside 16..30, or a base not aligned to the size.</exception>
    /// <exception cref="InvalidOperationException">The area lies outside the 47-bit user address space, or overlaps a registered one.</exception>
    public static void Register(nint areaBase, int shift, object owner)
    {
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentOutOfRangeException.ThrowIfLessThan(shift, PageConstants.MinRegionShift);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(shift, PageConstants.MaxRegionShift);
        nuint regionBase = (nuint)areaBase;
        if ((regionBase & (((nuint)1 << shift) - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(areaBase), $"0x{regionBase:x} is not aligned to 2^{shift}.");
        nuint entry = regionBase | ((nuint)shift & EntryShiftMask);
        int chunks = 1 << (shift - ChunkShift);
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
                if (l2[first + (nuint)i] != 0)
                    throw new InvalidOperationException($"Area at 0x{regionBase:x} overlaps a registered one.");
            for (int i = 0; i < chunks; i++)
                l2[first + (nuint)i] = entry;
            s_regions[areaBase] = owner;
        }
    }

    /// <summary>
    /// Unregisters the area at <paramref name="areaBase"/>: <see cref="Lookup"/> finds nothing in it afterwards. A
    /// reader that looked it up just before may still read its descriptor table, which the owner keeps mapped.
    /// </summary>
    public static void Unregister(nint areaBase, int shift)
    {
        nuint regionBase = (nuint)areaBase;
        int chunks = 1 << (shift - ChunkShift);
        lock (s_writeLock)
        {
            nuint* l2 = s_l1[regionBase >> 32];
            if (l2 != null)
            {
                nuint first = (regionBase >> ChunkShift) & (L2Entries - 1);
                for (int i = 0; i < chunks; i++)
                    l2[first + (nuint)i] = 0;
            }
            s_regions.TryRemove(areaBase, out _);
        }
    }
}
