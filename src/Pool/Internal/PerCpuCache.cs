using System.Runtime.CompilerServices;

namespace UnmanagedPool.Internal;

/// <summary>
/// A small stack of pages in front of the ring, one per CPU, for threads other than the consumer. The CPU
/// number is only a hint (a thread can migrate at any instruction), so a cache is used only while its owner
/// word is held: acquired with one CAS, released with one store. Everything else in the cache is touched only
/// by the owner, with plain reads and writes. Each cache is a separate object followed on the heap by its own
/// 536-byte item array, which keeps two caches' hot words off a shared cache line.
/// </summary>
internal sealed class PerCpuCache
{
    /// <summary>Entries per cache (arbitrary: two ring batches).</summary>
    public const int Capacity = 64;

    /// <summary>Entries moved to the ring when the cache fills, and taken from it when it is empty.</summary>
    public const int Batch = Capacity / 2;

    private int _owner;
    public int Count;
    public readonly nint[] Items = new nint[Capacity];
    public PoolCounters Stats;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryAcquire() =>
        // Interlocked: mutual exclusion between threads that picked the same CPU index (or migrated).
        Interlocked.CompareExchange(ref _owner, 1, 0) == 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release() =>
        // Volatile (release): the owner's writes to Count/Items/Stats happen before the next owner's acquire.
        Volatile.Write(ref _owner, 0);

    /// <summary>Acquires the cache, spinning: for the rare drains (Dispose, UpdateNid) that must not skip a cache.</summary>
    public void AcquireSpinning()
    {
        var spin = new SpinWait();
        while (!TryAcquire())
            spin.SpinOnce(sleep1Threshold: -1);
    }
}
