using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Tracing;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using UnmanagedPool.Internal;
using UnmanagedPool.Native;

namespace UnmanagedPool;

// The consumer's alloc cache: its hot word (count, recycle bits, counters) and items, inside the pool object so the
// fast path reaches them with one load from the pool's own address. Written by the consumer thread alone.
public sealed unsafe partial class PagePool
{

    /// <summary>
    /// The consumer's fields that change on every fast-path call (alloc cache and put buffer counts, its counters,
    /// its fragment page), with a cache line of padding on each side. The pool's other fields are read by every
    /// thread that puts a page back (its state, identity, ring, caches); sharing a line with words the consumer
    /// writes per page would make each such put wait for that line to come back from the consumer's core.
    /// </summary>
    [StructLayout(LayoutKind.Explicit, Size = 320)]
    internal struct ConsumerHot
    {
        /// <summary>
        /// Bits 0–7: the alloc cache's count (0..128), or <see cref="CountBlocked"/>, which stops both fast paths;
        /// bit 8: <see cref="RecycleBlocked"/>, which stops the recycle fast path alone; bits 9–63: the pages the
        /// recycle fast path put in the cache (<c>recycle_cached</c>). One word, so each fast path tests it with
        /// constants and moves it with one store; see <see cref="CacheCount"/>.
        /// </summary>
        [FieldOffset(64)] public long CacheWord;
        [FieldOffset(72)] public int PutCount;
        /// <summary>The alloc cache's count while the word holds <see cref="CountBlocked"/> (debug mode, after Dispose).</summary>
        [FieldOffset(76)] public int BlockedCount;
        /// <summary>Pages put in the alloc cache by everything but the recycle fast path.</summary>
        [FieldOffset(80)] public long CacheIn;
        /// <summary>Pages taken out of the alloc cache by everything but the alloc fast path.</summary>
        [FieldOffset(88)] public long CacheOut;
        [FieldOffset(96)] public PoolCounters Stats;
        [FieldOffset(192)] public FragCutter Frag;
    }

    // The fast paths keep no counter of their own: alloc moves only the count and recycle adds CacheWordRecycle,
    // one to the count and one to the pages recycled above it. Every other change of the count goes through
    // CacheCount, which adds it to CacheIn or CacheOut; what the alloc fast path took follows (see FastCounts).
    private const long CacheCountMask = 0xFF;
    private const long CountBlocked = 0xFF;           // in the count's byte: no fast alloc or recycle
    private const long RecycleBlocked = 0x100;        // alone: no fast recycle (DMA sync on every put)
    private const int RecycledShift = 9;
    private const long CacheWordRecycle = (1L << RecycledShift) + 1;

    /// <summary>
    /// The alloc cache's count, for every path but the two fast ones. Consumer thread only, plain writes, ordered
    /// so that a reader on another thread (<see cref="GetStats"/>) that reads CacheIn, then the word, then CacheOut
    /// may see the allocations the fast path made too few, never too many.
    /// </summary>
    private int CacheCount
    {
        get
        {
            long count = _hot.CacheWord & CacheCountMask;
            return count == CountBlocked ? _hot.BlockedCount : (int)count;
        }
        set
        {
            Debug.Assert((uint)value <= AllocCacheSize);
            long word = _hot.CacheWord;
            bool blocked = (word & CacheCountMask) == CountBlocked;
            int delta = value - (blocked ? _hot.BlockedCount : (int)(word & CacheCountMask));
            long next = (word & ~CacheCountMask) | (uint)value;
            if (delta >= 0)
            {
                if (blocked)
                    _hot.BlockedCount = value;
                else
                    _hot.CacheWord = next;
                // Volatile: the count grows before CacheIn does (release order for the reader above).
                Volatile.Write(ref _hot.CacheIn, _hot.CacheIn + delta);
            }
            else
            {
                _hot.CacheOut -= delta;
                // Volatile: CacheOut grows before the count shrinks (release order for the reader above).
                if (blocked)
                    Volatile.Write(ref _hot.BlockedCount, value);
                else
                    Volatile.Write(ref _hot.CacheWord, next);
            }
        }
    }

    /// <summary>
    /// Stops both alloc-cache fast paths (debug mode, Dispose): the count moves to <see cref="ConsumerHot.BlockedCount"/>
    /// and the word's count byte becomes <see cref="CountBlocked"/>. Consumer thread, or a consumer that is quiescent.
    /// </summary>
    private void BlockCacheFastPaths()
    {
        long word = _hot.CacheWord;
        if ((word & CacheCountMask) == CountBlocked)
            return;
        _hot.BlockedCount = (int)(word & CacheCountMask);
        // Volatile: the count is in BlockedCount before the word says to look there.
        Volatile.Write(ref _hot.CacheWord, word | CountBlocked);
    }

    /// <summary>The count of a cache the slow path stashes pages into, read and written where it lives.</summary>
    private interface ICacheCount
    {
        int Value { get; set; }
    }

    /// <summary>The consumer's alloc cache count (through <see cref="CacheCount"/>, which keeps its accounting).</summary>
    private readonly struct AllocCacheCount(PagePool pool) : ICacheCount
    {
        public int Value
        {
            get => pool.CacheCount;
            set => pool.CacheCount = value;
        }
    }

    /// <summary>A per-CPU cache's count (its holder's plain field).</summary>
    private readonly struct PerCpuCacheCount(PerCpuCache cache) : ICacheCount
    {
        public int Value
        {
            get => cache.Count;
            set => cache.Count = value;
        }
    }

    /// <summary>
    /// The fast allocations to report: <paramref name="derived"/>, or the most reported before when that is more.
    /// Read on another thread while the consumer changes the count, <see cref="FastCounts"/> may come out a little
    /// short; a counter must not go backwards, so the reported value only grows. Exact whenever the consumer is idle.
    /// </summary>
    private long MonotonicFastAllocs(long derived)
    {
        // Interlocked: GetStats runs on any thread (meters, EventSource counters, tools) at once.
        long seen = Volatile.Read(ref _fastAllocsReported);
        while (derived > seen)
        {
            long was = Interlocked.CompareExchange(ref _fastAllocsReported, derived, seen);
            if (was == seen)
                return derived;
            seen = was;
        }
        return seen;
    }

    /// <summary>
    /// Pages the recycle fast path put in the alloc cache and the alloc fast path took from it, derived from the
    /// cache word: everything that went in (recycled + CacheIn) less everything that came out another way
    /// (CacheOut) less what is still there. The recycled count has 55 bits: it wraps after 3.6e16 recycles, a year
    /// at one per nanosecond.
    /// </summary>
    private (long Recycled, long Allocated) FastCounts()
    {
        // Volatile: read in the order CacheCount writes against (in, word, out), so a change under way shows as
        // too few fast allocations, never too many.
        long cacheIn = Volatile.Read(ref _hot.CacheIn);
        long word = Volatile.Read(ref _hot.CacheWord);
        long count = word & CacheCountMask;
        if (count == CountBlocked)
            count = Volatile.Read(ref _hot.BlockedCount);
        long cacheOut = Volatile.Read(ref _hot.CacheOut);
        long recycled = (long)((ulong)word >> RecycledShift);
        long allocated = recycled + cacheIn - cacheOut - count;
        return (recycled, allocated);
    }

    /// <summary>The consumer's alloc cache: <see cref="AllocCacheSize"/> page addresses, held inside the pool object.</summary>
    [InlineArray(AllocCacheSize)]
    internal struct AllocCacheItems
    {
        private nint _first;
    }

    /// <summary>The alloc cache as a span (bounds-checked), for the slow paths.</summary>
    private Span<nint> Cache => _cacheItems;

    /// <summary>The alloc cache's first entry, for the fast paths' unchecked indexing (the count bounds the index).</summary>
    private ref nint CacheRef => ref Unsafe.As<AllocCacheItems, nint>(ref _cacheItems);

    // ---- the alloc cache and put buffer as other owners see them (the trimmer): consumer thread only but the hint ----

    /// <summary>Consumer thread only: moves every page of the alloc cache and the put buffer to <paramref name="pages"/>.</summary>
    private void TakeAllConsumerCached(List<nint> pages)
    {
        for (int i = 0; i < CacheCount; i++)
            pages.Add(Cache[i]);
        CacheCount = 0;
        for (int i = 0; i < _hot.PutCount; i++)
            pages.Add(_putBuffer[i]);
        _hot.PutCount = 0;
    }

    /// <summary>Any thread: how many pages the consumer keeps in its alloc cache and put buffer (plain reads, a hint).</summary>
    private int ConsumerCachedHint => CacheCount + _hot.PutCount;

    /// <summary>
    /// Consumer thread only: stashes pages of <paramref name="pages"/>, from the first, in the alloc cache while it
    /// has room; returns how many it took.
    /// </summary>
    private int StashInAllocCache(List<nint> pages)
    {
        int next = 0;
        for (; next < pages.Count && CacheCount < AllocCacheSize; next++)
            Cache[CacheCount++] = pages[next];
        return next;
    }

    /// <summary>
    /// Consumer thread only: takes the put buffer (the ring's front) and then the oldest alloc-cache entries above
    /// <paramref name="keep"/> (the rest slide down) into <paramref name="scratch"/>; returns the pages taken. The
    /// cache and the buffer are right before the caller releases any of them.
    /// </summary>
    private Span<nint> TakeConsumerCachedAbove(int keep, Span<nint> scratch)
    {
        int fromPutBuffer = _hot.PutCount;
        keep = Math.Min(keep, CacheCount);
        int drop = CacheCount - keep;
        Debug.Assert(fromPutBuffer + drop <= scratch.Length, "trim scratch too small");
        Span<nint> trimmed = scratch[..(fromPutBuffer + drop)];
        _putBuffer.AsSpan(0, fromPutBuffer).CopyTo(trimmed);
        _hot.PutCount = 0;
        Cache[..drop].CopyTo(trimmed[fromPutBuffer..]);
        Cache.Slice(drop, keep).CopyTo(Cache);
        CacheCount = keep;
        return trimmed;
    }
}
