using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using UnmanagedPool.Native;

namespace UnmanagedPool.Stress;

/// <summary>
/// One bit per 4 KiB page of the address space the pools hand out: set when a page is handed to a user, cleared
/// just before the user gives it back. A set that finds the bit already set is a page handed out twice; a clear
/// that finds it clear is a page given back that nobody held. Bits live in 2 MiB chunks (512 bits) created on
/// first touch; after that marking a page is one dictionary read and one atomic OR, with no allocation.
/// </summary>
/// <remarks>
/// The order matters: the holder clears the bit before it puts the page, so a page the pool recycles and hands
/// straight to another thread can never be seen as still held.
/// </remarks>
public sealed class OwnershipMap
{
    private const int ChunkShift = 21;
    private readonly ConcurrentDictionary<long, long[]> _chunks = new();

    /// <summary>Marks <paramref name="page"/> as held; false when it already was (a double hand-out).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe bool TryAcquire(NetMemRef page)
    {
        nuint address = (nuint)page.Address;
        long[] bits = Chunk(address);
        int bit = (int)((address >> PageConstants.PageShift) & 511);
        long mask = 1L << (bit & 63);
        // Interlocked: any thread may mark or clear pages of the same chunk; the old value tells who won.
        return (Interlocked.Or(ref bits[bit >> 6], mask) & mask) == 0;
    }

    /// <summary>Marks <paramref name="page"/> as no longer held; false when it was not held.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe bool TryRelease(NetMemRef page)
    {
        nuint address = (nuint)page.Address;
        long[] bits = Chunk(address);
        int bit = (int)((address >> PageConstants.PageShift) & 511);
        long mask = 1L << (bit & 63);
        // Interlocked: as in TryAcquire.
        return (Interlocked.And(ref bits[bit >> 6], ~mask) & mask) != 0;
    }

    /// <summary>Pages currently marked as held.</summary>
    public long HeldCount()
    {
        long n = 0;
        foreach (long[] bits in _chunks.Values)
            foreach (long word in bits)
                n += long.PopCount(Volatile.Read(ref Unsafe.AsRef(in word)));
        return n;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private long[] Chunk(nuint address)
    {
        long key = (long)(address >> ChunkShift);
        if (_chunks.TryGetValue(key, out long[]? bits))
            return bits;
        return AddChunk(key);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private long[] AddChunk(long key) => _chunks.GetOrAdd(key, static _ => new long[512 / 64]);
}
