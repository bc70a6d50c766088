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

/// <summary>
/// A pool of native pages recycled instead of freed: the Linux kernel's <c>page_pool</c> (net/core/page_pool.c).
/// </summary>
/// <remarks>
/// <para>
/// One thread is the pool's consumer (the kernel's NAPI context): the creating thread, or the one that called
/// <see cref="BindConsumer"/>. It allocates from a 128-entry alloc cache with no atomic operation, refills it
/// from the ring 64 at a time, and falls back to taking 64 pages in bulk from the <see cref="PageProvider"/>.
/// Any other thread may allocate and put too: it goes through a per-CPU cache in front of the lock-free ring,
/// paying one CAS for the cache and, once per batch, one for the ring.
/// </para>
/// <para>
/// Page ownership follows the kernel: <c>pp_magic</c> carries <see cref="NetMemRef.PpSignature"/> and <c>pp</c>
/// names the pool while the pool holds the page; <c>pp_ref_count</c> counts the references users hold (0 while
/// the page sits in a cache or the ring). Accounting: <c>Hold - Release == InFlight</c>.
/// </para>
/// </remarks>
public sealed unsafe partial class PagePool : IDisposable
{
    /// <summary>Entries in the consumer's alloc cache (the kernel's <c>PP_ALLOC_CACHE_SIZE</c>).</summary>
    public const int AllocCacheSize = 128;

    /// <summary>Pages moved per refill from the ring or the provider (the kernel's <c>PP_ALLOC_CACHE_REFILL</c>).</summary>
    public const int AllocCacheRefill = 64;

    /// <summary>Interval between release retries after <see cref="Dispose"/> with pages in flight (the kernel's HZ).</summary>
    internal static TimeSpan ReleaseRetryInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Interval between "stalled pool shutdown" warnings (the kernel's 60 s).</summary>
    internal static TimeSpan StalledWarningInterval { get; set; } = TimeSpan.FromSeconds(60);

    private const int StateAlive = 0;
    private const int StateDestroying = 1;
    private const int StateFreed = 2;

    private static long s_lastId;
    private static readonly ConcurrentDictionary<long, PagePool> s_pools = new();

    // ---- consumer-only state (the alloc cache); touched by the consumer thread alone, no atomics ----
    // The consumer's counters and cursors, written on every fast-path call: on cache lines of their own.
    private ConsumerHot _hot;
    // The alloc cache itself, inside the pool object: the fast path reaches an entry from the pool's own address,
    // with no load of an array or pointer field first. Placed after _hot, away from the fields other threads read.
    private AllocCacheItems _cacheItems;
    private readonly bool _debug;
    // The consumer's own front of the ring for puts without allowDirect: filled with plain stores, flushed to
    // the ring in batches (one CAS per batch). Consumer thread only.
    private readonly nint[] _putBuffer = GC.AllocateArray<nint>(PerCpuCache.Capacity, pinned: true);
    private readonly nint* _putBufferData;
    // The put buffer's fast path, other threads' per-CPU put fast path and the fragment recycle run only while this
    // is nonzero: 0 in debug mode, with DMA sync and after Dispose. The alloc cache's fast paths are blocked in the
    // cache word instead (CacheWord).
    private int _recycleLimit;

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
        [FieldOffset(192)] public FragState Frag;
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

    // ---- shared state ----
    private int _state;                 // StateAlive → StateDestroying → StateFreed
    private int _consumerThreadId;
    private int _nid;
    private readonly nint _pp;          // this pool's identity in NetMem.Pp: a GCHandle to the pool
    // What an ordinary page of this pool holds in its adjacent pp_magic and pp words, compared in one load.
    private readonly Vector128<ulong> _ppIdentity;
    private GCHandle _ppHandle;
    private readonly PtrRing _ring;
    private readonly PerCpuCache[] _perCpu;
    private readonly Lock _perCpuDrainLock = new();  // one drainer at a time revokes per-CPU caches
    private readonly PutterState?[] _drainRevoked;   // the drain's scratch (under _perCpuDrainLock): holders revoked
    private readonly bool[] _drainTaken;             // and caches taken, one entry per per-CPU cache
    private PoolCounters _shared;       // rare counters from any thread: Interlocked only
    private long _release;              // pages_state_release_cnt: Interlocked, any thread releases
    private int _takesUnderWay;         // provider takes being set up (their Holds not all counted): Interlocked
    private int _drainedAll;            // 1 once a drain after Dispose revoked every per-CPU cache: Interlocked
    private long _destroyCount;
    private long _destroyStartedTicks;
    private long _lastStallWarningTicks;
    private Timer? _retryTimer;
    private long _fastAllocsReported;  // the most fast allocations GetStats reported (see MonotonicFastAllocs)
    private int _binding;              // how many BindConsumer calls: the current handle carries the latest

    private readonly int _order;
    private readonly PagePoolFlags _flags;
    private readonly bool _dmaMap;
    private readonly bool _dmaSync;
    private readonly DmaDirection _dmaDir;
    private readonly int _maxLen;
    private readonly int _offset;
    private readonly IDmaMapper _mapper;
    private readonly IMemoryProvider _provider;
    private readonly bool _ownsProvider;
    private readonly Action<NetMemRef, object?>? _initCallback;
    private readonly object? _initArg;

    /// <summary>The kernel's <c>page_pool_create</c>: validates <paramref name="options"/> as <c>page_pool_init</c> does.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">An option is invalid; <see cref="ArgumentException.ParamName"/> names it.</exception>
    public PagePool(PagePoolOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Validate(options);

        Options = options.Clone();
        _order = options.Order;
        _flags = options.Flags;
        _dmaMap = (options.Flags & PagePoolFlags.DmaMap) != 0;
        _dmaSync = (options.Flags & PagePoolFlags.DmaSyncDev) != 0;
        _dmaDir = options.DmaDirection;
        _maxLen = options.MaxLen;
        _offset = options.Offset;
        _mapper = options.DmaMapper ?? IdentityDmaMapper.Instance;
        _initCallback = options.InitCallback;
        _initArg = options.InitArg;
        _nid = options.NumaNode;
        _debug = options.DebugMode;
        _verifyHandles = _debug;
        _putBufferData = (nint*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_putBuffer));
        _recycleLimit = _debug || _dmaSync ? 0 : AllocCacheSize;
        // Debug mode checks every allocation and put on the slow paths; DMA sync needs a sync on every put.
        if (_debug)
            BlockCacheFastPaths();
        else if (_dmaSync)
            _hot.CacheWord |= RecycleBlocked;
        _provider = options.MemoryProvider ?? options.Provider ?? new PageProvider();
        _ownsProvider = options.MemoryProvider == null && options.Provider == null;
        _provider.Init(Binding);
        PoolSize = Math.Min(options.PoolSize, PagePoolOptions.MaxPoolSize);
        _ring = new PtrRing(PoolSize);
        if (_dmaMap)
            SizeDmaTable(PoolSize);
        int cpus = Math.Max(1, Environment.ProcessorCount);
        _perCpu = new PerCpuCache[cpus];
        _drainRevoked = new PutterState?[cpus];
        _drainTaken = new bool[cpus];
        for (int i = 0; i < cpus; i++)
            _perCpu[i] = new PerCpuCache(this, i);

        _consumerThreadId = Environment.CurrentManagedThreadId;
        _ppHandle = GCHandle.Alloc(this, GCHandleType.Normal);
        _pp = GCHandle.ToIntPtr(_ppHandle);
        _ppIdentity = Vector128.Create(NetMemRef.PpSignature, (ulong)_pp);
        Id = Interlocked.Increment(ref s_lastId);
        Name = options.Name ?? $"page_pool-{Id}";
        s_pools[Id] = this;
        OnCreated();

        var log = PagePoolEventSource.Log;
        if (log.IsEnabled(EventLevel.Informational, PagePoolEventSource.Keywords.Lifecycle))
            log.PoolCreated(Id, Name, _order, PoolSize, (int)_flags, _nid);
    }

    /// <summary>The pool's id (the kernel's <c>pool->user.id</c>), unique in the process, starting at 1.</summary>
    public long Id { get; }

    /// <summary>The pool's name (<see cref="PagePoolOptions.Name"/>, or <c>page_pool-ID</c>).</summary>
    public string Name { get; }

    /// <summary>A copy of the options the pool was created with.</summary>
    public PagePoolOptions Options { get; }

    /// <summary>Ring capacity actually used (the clamped <see cref="PagePoolOptions.PoolSize"/>).</summary>
    public int PoolSize { get; }

    /// <summary>Allocation order of every buffer.</summary>
    public int Order => _order;

    /// <summary>Bytes per buffer: <c>4096 &lt;&lt; Order</c>.</summary>
    public int BufferSize => PageConstants.PageSize << _order;

    /// <summary>The NUMA node the pool allocates on (-1 for none); changed by <see cref="UpdateNid"/>.</summary>
    public int Nid => Volatile.Read(ref _nid);

    /// <summary>The region provider the pool takes pages from.</summary>
    /// <exception cref="InvalidOperationException">The pool takes its pages from another kind of provider (see <see cref="MemoryProvider"/>).</exception>
    public PageProvider Provider => _provider as PageProvider
        ?? throw new InvalidOperationException($"PagePool {Id} takes its pages from a {_provider.Kind} provider, not a PageProvider.");

    /// <summary>The memory provider the pool takes pages from (<see cref="PagePoolOptions.MemoryProvider"/>, else the region provider).</summary>
    public IMemoryProvider MemoryProvider => _provider;

    private MemoryProviderBinding Binding => new(Options.Name, _order, Options.NumaNode, _dmaMap);

    /// <summary>Managed thread id of the consumer thread.</summary>
    public int ConsumerThreadId => Volatile.Read(ref _consumerThreadId);

    /// <summary>Whether <see cref="Dispose"/> has been called.</summary>
    public bool IsDisposed => Volatile.Read(ref _state) != StateAlive;

    /// <summary>Whether the pool has released its last page and freed its resources after <see cref="Dispose"/>.</summary>
    public bool IsFreed => Volatile.Read(ref _state) == StateFreed;

    /// <summary>Whether debug checks are on for this pool.</summary>
    public bool DebugMode => _debug;

    /// <summary>The opaque value this pool writes into <see cref="NetMem.Pp"/>.</summary>
    public nint PpHandle => _pp;

    /// <summary>Live pools in the process (created and not yet freed), for statistics and tools.</summary>
    public static ICollection<PagePool> LivePools => s_pools.Values;

    /// <summary>The pool named by a page's <see cref="NetMem.Pp"/>, or null when the page is not a live pool's.</summary>
    public static PagePool? FromPage(NetMemRef page)
    {
        if (page.IsNull || !page.IsPagePool)
            return null;
        return FromPpHandle(page.Value.Pp);
    }

    // =====================================================================================================
    // Consumer binding
    // =====================================================================================================

    /// <summary>
    /// Makes the calling thread the pool's consumer (the kernel's NAPI context) and returns a handle whose
    /// methods run the fast path with no per-call thread check. The previous consumer must be quiescent:
    /// the alloc cache passes to the new thread as it is. Handles bound earlier become invalid.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    public PagePoolConsumer BindConsumer()
    {
        ThrowIfDisposed();
        int tid = Environment.CurrentManagedThreadId;
        // Volatile: other threads read the consumer id to decide whether allowDirect may be honoured.
        Volatile.Write(ref _consumerThreadId, tid);
        // Interlocked: BindConsumer may race itself from two threads; each handle gets its own number.
        int binding = Interlocked.Increment(ref _binding);
        // Volatile: UnbindConsumer may have run on the thread that gave the queue up.
        if (Volatile.Read(ref _unbound) != 0)
            ResumeAfterUnbind();
        return new PagePoolConsumer(this, tid, binding);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool OnConsumerThread() => IsConsumer(PutterState.Current);

    /// <summary>Whether <paramref name="s"/> is the calling thread's state and that thread is the consumer.</summary>
    // Volatile: BindConsumer moves the consumer from another thread.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool IsConsumer(PutterState s) => s.ManagedThreadId == Volatile.Read(ref _consumerThreadId);

    // Volatile: a handle may be checked on another thread than the one whose BindConsumer replaced it. Two
    // BindConsumer calls racing each other may leave the consumer id of one and the number of the other: then
    // neither handle is current, and the next BindConsumer settles it.
    internal bool IsCurrentBinding(int binding, int threadId) =>
        Volatile.Read(ref _binding) == binding && Volatile.Read(ref _consumerThreadId) == threadId;

    // =====================================================================================================
    // Allocation
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_alloc_pages</c>: one buffer with <c>pp_ref_count</c> 1, or
    /// <see cref="NetMemRef.Null"/> when memory is exhausted. From the consumer thread it runs the alloc-cache
    /// fast path; from any other thread it goes through that thread's per-CPU cache and the ring.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NetMemRef AllocPage()
    {
        PutterState s = PutterState.Current;
        return IsConsumer(s) ? ConsumerAlloc() : SharedAlloc(s);
    }

    /// <summary>
    /// Bulk allocation: fills <paramref name="pages"/> with buffers, each with <c>pp_ref_count</c> 1.
    /// </summary>
    /// <returns>
    /// How many were allocated: fewer than asked when memory ran out, or when an allocation after the first failed
    /// (the pool was disposed meanwhile, a DMA mapper or init callback threw): the pages filled so far are the
    /// caller's, and the failure shows again on the next call. An exception means nothing was filled.
    /// </returns>
    /// <exception cref="ObjectDisposedException">The pool has been disposed (before any page was filled).</exception>
    public int AllocPages(Span<NetMemRef> pages)
    {
        PutterState s = PutterState.Current;
        if (IsConsumer(s))
            return ConsumerAllocBulk(pages);
        for (int i = 0; i < pages.Length; i++)
        {
            NetMemRef page;
            try
            {
                page = SharedAlloc(s);
            }
            catch when (i > 0)
            {
                // Part of the span is filled: the caller must get the count, or those pages are stranded.
                return i;
            }
            if (page.IsNull)
                return i;
            pages[i] = page;
            RaceHooks.At(RaceHooks.SharedBulkAllocNext);
        }
        return pages.Length;
    }

    /// <summary>Consumer thread only: the fast path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal NetMemRef ConsumerAlloc()
    {
        return TryConsumerAllocFast(out NetMem* d) ? new NetMemRef(d) : ConsumerAllocSlow();
    }

    /// <summary>
    /// Consumer thread only: a pop from the alloc cache into <paramref name="d"/>; false when the cache is empty or
    /// the fast path is blocked (debug mode, Dispose), which sends the caller to <see cref="ConsumerAllocSlow"/>.
    /// A bool rather than a null test lets the JIT branch straight to the caller's slow call.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryConsumerAllocFast(out NetMem* d)
    {
        long word = _hot.CacheWord;
        // The count's byte less one, unsigned: an empty cache (0) and CountBlocked both fall outside the cache.
        uint top = (uint)(byte)word - 1;
        if (top < AllocCacheSize)
        {
            d = (NetMem*)Unsafe.Add(ref CacheRef, top);
            // A page in the pool holds no reference. One that does is in use: two puts that raced (the single-owner
            // put has no atomic) left it in the pool twice, and the slow path drops this entry (see ClaimForHandOut).
            if (d->PpRefCount == 0)
            {
                d->PpRefCount = 1;
                _hot.CacheWord = word - 1;
                return true;
            }
        }
        d = null;
        return false;
    }

    /// <summary>
    /// The hand-out of a page just taken off a cache or the ring by the thread that owns that step (the cache's
    /// owner; the ring's dequeue gives each entry to one thread): its count goes from 0 (in the pool) to 1. A page
    /// whose count is not 0 is in use: two puts that raced (the single-owner put has no atomic operation, as the
    /// kernel's) or a put after the page came back left it in the pool twice. This entry was already removed; the
    /// page is not handed out again, and the exception names it.
    /// </summary>
    /// <remarks>
    /// Two entries of one page taken at the same instant by two threads (the consumer and a per-CPU cache's holder)
    /// could both read 0; catching that too would take an atomic operation on every hand-out.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ClaimForHandOut(NetMem* d)
    {
        if (d->PpRefCount != 0)
            PoolThrowHelper.ThrowInPoolTwice(new NetMemRef(d), Id);
        d->PpRefCount = 1;
    }

    /// <summary>
    /// Consumer thread only: recycle_direct when everything is ordinary (a single-reference page of this pool,
    /// room in the alloc cache, no debug, no DMA sync, not disposed). False sends the caller to the full path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryConsumerRecycleFast(NetMemRef page)
    {
        NetMem* d = page.Descriptor;
        long word = _hot.CacheWord;
        // The count's byte and RecycleBlocked: a full cache (128), CountBlocked and RecycleBlocked all fail the test.
        uint count = (uint)word & (uint)(CacheCountMask | RecycleBlocked);
        if (count < AllocCacheSize && IsOrdinaryLastReference(d))
        {
            d->PpRefCount = 0;
            Unsafe.Add(ref CacheRef, count) = (nint)d;
            _hot.CacheWord = word + CacheWordRecycle; // count < 128: no carry out of the count's byte
            return true;
        }
        return false;
    }

    /// <summary>
    /// Whether <paramref name="d"/> is this pool's page held by its only user with no other page reference: the
    /// case the fast paths recycle without further checks. The exact signature is compared (the pool writes it
    /// so); a page with the low magic bits set, or anything else, takes the checked path. pp_magic and pp are
    /// adjacent (offsets 8 and 16): one 16-byte load, XOR and test covers both, measured cheaper on this path than
    /// two scalar compares or a vector compare into a mask register.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool IsOrdinaryLastReference(NetMem* d) =>
        d != null && (Vector128.LoadUnsafe(ref d->PpMagic) ^ _ppIdentity) == Vector128<ulong>.Zero && d->PpRefCount == 1 && d->RefCount == 1;

    /// <summary>
    /// Consumer thread only: the full recycle_direct path (checks, references, sync, cache or ring). A piece of
    /// the fragment page being cut goes back to the consumer's piece count instead, with no atomic.
    /// </summary>
    internal void ConsumerRecycleDirectSlow(NetMemRef page, int dmaSyncSize)
    {
        NetMem* d = CheckOwned(page);
        if ((nint)d == ConsumerFragPage)
            ConsumerPutFrag(d);
        else if (UnrefAndTest(d))
            RecycleDirectUnrefed(d, dmaSyncSize);
    }

    /// <summary>
    /// Consumer thread only: a put without allowDirect when everything is ordinary (as
    /// <see cref="TryConsumerRecycleFast"/>), into the consumer's put buffer short of its flush point. False
    /// sends the caller to the full path, which also flushes the buffer to the ring.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryConsumerPutRingFast(NetMemRef page)
    {
        NetMem* d = page.Descriptor;
        int count = _hot.PutCount;
        // _recycleLimit is 0 in debug mode, with DMA sync and after Dispose: the checked path handles those.
        if (count < PerCpuCache.Capacity - 1 && _recycleLimit != 0 && IsOrdinaryLastReference(d))
        {
            d->PpRefCount = 0;
            _putBufferData[count] = (nint)d;
            _hot.PutCount = count + 1;
            _hot.Stats.Ring++;
            return true;
        }
        return false;
    }

    /// <summary>Consumer thread only: a put without allowDirect (the ring path through the consumer's put buffer).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ConsumerPutRing(NetMemRef page, int dmaSyncSize)
    {
        NetMem* d = CheckOwned(page);
        if (UnrefAndTest(d) && CanRecycle(d, dmaSyncSize))
            ConsumerRecycleInRing(d);
    }

    /// <summary>Consumer thread only: bulk allocation; returns the count filled, or throws having filled nothing.</summary>
    internal int ConsumerAllocBulk(Span<NetMemRef> pages)
    {
        int done = 0;
        while (done < pages.Length)
        {
            int count = CacheCount;
            if (count == 0)
            {
                NetMemRef page;
                try
                {
                    page = ConsumerAllocSlow();
                }
                catch when (done > 0)
                {
                    // Part of the span is filled (a Dispose from a callback, a mapper that threw): the caller must
                    // get the count, or those pages are stranded. The failure shows again on the next call.
                    break;
                }
                if (page.IsNull)
                    break;
                pages[done++] = page;
                continue;
            }
            int n = Math.Min(count, pages.Length - done);
            ref nint cache = ref CacheRef;
            int taken = 0;
            bool duplicate = false;
            for (; taken < n; taken++)
            {
                NetMem* d = (NetMem*)Unsafe.Add(ref cache, count - 1);
                if (d->PpRefCount != 0)
                {
                    // In use: a second entry of a page put twice (see TryConsumerAllocFast). It stays on top for
                    // a call that has filled nothing to drop and report.
                    duplicate = true;
                    break;
                }
                count--;
                d->PpRefCount = 1;
                pages[done++] = new NetMemRef(d);
            }
            CacheCount = count;
            _hot.Stats.Fast += taken;
            // After the cache is consistent: a corruption found here throws.
            if (_debug)
                DebugOnAllocBulk(pages[..done], done - taken);
            if (duplicate)
            {
                if (done == 0)
                    ClaimForHandOut((NetMem*)Cache[--CacheCount]);
                break;
            }
        }
        return done;
    }

    /// <summary>Consumer thread only: the alloc cache is empty. Refill from the ring, else from the provider.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal NetMemRef ConsumerAllocSlow()
    {
        ThrowIfDisposed();
        if (CacheCount > 0)
        {
            // Debug mode: the fast path is blocked so that every allocation passes the checks here.
            NetMem* p = (NetMem*)Cache[--CacheCount];
            ClaimForHandOut(p);
            _hot.Stats.Fast++;
            if (_debug)
                DebugOnAlloc(p);
            return new NetMemRef(p);
        }
        if (RefillAllocCache())
        {
            NetMem* d = (NetMem*)Cache[--CacheCount];
            ClaimForHandOut(d);
            _hot.Stats.Refill++;
            if (_debug)
                DebugOnAlloc(d);
            return new NetMemRef(d);
        }
        NetMemRef fresh = AllocPagesSlow(ref _hot.Stats, Cache, new AllocCacheCount(this));
        if (!fresh.IsNull)
            return fresh;
        // The provider is out of pages: before failing, take what other threads parked in per-CPU caches.
        int stolen = StealFromPerCpuCaches(Cache[..AllocCacheRefill]);
        if (stolen == 0)
            return default;
        CacheCount = stolen;
        _hot.Stats.Refill++;
        NetMem* parked = (NetMem*)Cache[--CacheCount];
        ClaimForHandOut(parked);
        if (_debug)
            DebugOnAlloc(parked);
        return new NetMemRef(parked);
    }

    /// <summary>
    /// The kernel's <c>page_pool_refill_alloc_cache</c>: moves up to 64 pages from the ring (or, when it is empty,
    /// from the consumer's own put buffer) into the alloc cache, releasing pages of another NUMA node (waive).
    /// </summary>
    private bool RefillAllocCache()
    {
        // Called with the alloc cache empty: pages land straight in it, with no intermediate copy.
        Span<nint> batch = Cache[..AllocCacheRefill];
        int n = _ring.DequeueBurst(batch);
        // Pull the descriptors' lines in while the cache is used from its top, most often from another core's cache
        // when other threads put the pages (measured: about 0.5 ns a page on the cross-thread benchmark here).
        if (Sse.IsSupported)
            for (int k = 0; k < n; k++)
                Sse.Prefetch0((void*)batch[k]);
        if (n == 0 && _hot.PutCount > 0)
        {
            n = Math.Min(_hot.PutCount, batch.Length);
            for (int k = 0; k < n; k++)
                batch[k] = _putBuffer[--_hot.PutCount];
        }
        if (n == 0)
        {
            _hot.Stats.Empty++;
            return false;
        }
        CacheCount = n;
        int nid = _nid;
        if (nid >= 0)
            WaiveForeignNode(nid);
        return CacheCount > 0;
    }

    /// <summary>
    /// After a refill of the alloc cache on a pool bound to a node: the first page of another node is released
    /// (waive), and the slow path will allocate on the right node; what the waive left unread goes back to the ring
    /// (or is released when the ring is full), so nothing is lost. The cache count is right before any release.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit] // the stack buffer is written before it is read
    private void WaiveForeignNode(int nid)
    {
        int n = CacheCount;
        for (int i = 0; i < n; i++)
        {
            if (((NetMem*)Cache[i])->Nid == nid)
                continue;
            _hot.Stats.Waive++;
            int back = _ring.EnqueueBurst(Cache[(i + 1)..n]);
            Span<nint> release = stackalloc nint[AllocCacheRefill];
            release[0] = Cache[i];
            Cache[(i + 1 + back)..n].CopyTo(release[1..]);
            release = release[..(n - i - back)];
            CacheCount = i;
            ReturnPages(release);
            return;
        }
    }

    /// <summary>
    /// Owner of <paramref name="items"/> only, after a refill into it from the ring: releases every page of another
    /// node than <paramref name="nid"/> (waive) and keeps the others. The count is right before any release.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit] // the stack buffer is written before it is read
    private void WaiveForeignNodes(int nid, Span<nint> items, ref int count, ref PoolCounters stats)
    {
        int n = count;
        Debug.Assert(n <= PerCpuCache.Capacity);
        Span<nint> waived = stackalloc nint[PerCpuCache.Capacity];
        int kept = 0, w = 0;
        for (int i = 0; i < n; i++)
        {
            nint p = items[i];
            if (((NetMem*)p)->Nid == nid)
                items[kept++] = p;
            else
                waived[w++] = p;
        }
        count = kept;
        stats.Waive += w;
        ReturnPages(waived[..w]);
    }

    /// <summary>
    /// Moves pages parked in per-CPU caches into <paramref name="batch"/>: the consumer's last resort when the
    /// ring is empty and the provider has nothing left. Not a routine refill: it would make the consumer fight
    /// the putting threads for their cache lines.
    /// </summary>
    private int StealFromPerCpuCaches(Span<nint> batch)
    {
        int n = 0;
        if (!EnterDrain())
            return 0;
        try
        {
            foreach (PerCpuCache c in _perCpu)
            {
                if (n == batch.Length)
                    break;
                // Volatile: Count is written by the cache's holder; an empty cache is not worth a revocation.
                if (Volatile.Read(ref c.Count) == 0 || !c.TakeForDrain())
                    continue;
                int take = Math.Min(c.Count, batch.Length - n);
                for (int k = 0; k < take; k++)
                    batch[n++] = c.Items[--c.Count];
                c.ReleaseDrained();
            }
        }
        finally
        {
            _perCpuDrainLock.Exit();
        }
        return n;
    }

    /// <summary>
    /// The kernel's <c>__page_pool_alloc_pages_slow</c>: takes a bulk of pages (one for order &gt; 0) from the
    /// provider, sets them up for the pool, returns one of them and puts the others in <paramref name="cache"/>.
    /// <para>
    /// The pages are set up on the stack and reach the cache only when all are ready: an init callback or DMA
    /// mapper that calls back into the pool (a put, <see cref="Trim"/>, <see cref="Dispose"/>) sees a consistent
    /// cache, and each page is counted in Hold as soon as it is set up, so a Dispose from such a callback sees it
    /// in flight. A pool disposed meanwhile gets every page back and the allocation throws.
    /// </para>
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit] // the stack buffer is written before it is read
    private NetMemRef AllocPagesSlow<TCount>(ref PoolCounters stats, Span<nint> cache, TCount cacheCount)
        where TCount : struct, ICacheCount
    {
        int want = _order == 0 ? Math.Min(AllocCacheRefill, cache.Length - cacheCount.Value) : 1;
        if (want <= 0)
            want = 1;
        Span<NetMemRef> fresh = stackalloc NetMemRef[AllocCacheRefill];
        fresh = fresh[..want];
        int got = TakeFromProvider(fresh);
        if (got == 0)
            return default;
        // On the consumer thread no per-CPU section covers the setup: a callback that disposes the pool before the
        // first page is counted in Hold would otherwise see nothing in flight and free it under the bulk.
        BeginTake();
        try
        {
            return SetUpAndStash(fresh[..got], ref stats, cache, cacheCount);
        }
        finally
        {
            EndTake();
        }
    }

    /// <summary>
    /// The setup half of <see cref="AllocPagesSlow"/>, inside its take: sets up the pages taken from the provider,
    /// counts them in Hold, returns one and stashes the others.
    /// </summary>
    private NetMemRef SetUpAndStash<TCount>(Span<NetMemRef> fresh, ref PoolCounters stats, Span<nint> cache, TCount cacheCount)
        where TCount : struct, ICacheCount
    {
        int got = fresh.Length;
        int usable = 0;
        int next = 0;
        bool setUp = false;
        try
        {
            while (next < got)
            {
                NetMem* d = fresh[next++].Descriptor;
                if (!SetupPage(d))
                    continue;
                fresh[usable++] = new NetMemRef(d);
                stats.Hold++;
            }
            setUp = true;
        }
        finally
        {
            if (!setUp)
            {
                // A page whose setup threw (an init callback or DMA mapper) was given back by SetupPage; the pages
                // after it were never set up and go straight back to the provider; those before it are the pool's.
                for (; next < got; next++)
                    fresh[next].PutPage();
                if (usable > 0)
                {
                    CountSlow(ref stats);
                    TraceHold(fresh[..usable]);
                }
                StashSetUp(MemoryMarshal.Cast<NetMemRef, nint>(fresh[..usable]), cache, cacheCount);
            }
        }
        if (usable == 0)
            return default;
        CountSlow(ref stats);
        TraceHold(fresh[..usable]);

        // Volatile: a callback above may have disposed the pool (on this thread or another).
        if (Volatile.Read(ref _state) != StateAlive)
        {
            ReturnPages(MemoryMarshal.Cast<NetMemRef, nint>(fresh[..usable]));
            PoolThrowHelper.ThrowDisposed(Id);
        }
        NetMem* page = fresh[usable - 1].Descriptor;
        StashSetUp(MemoryMarshal.Cast<NetMemRef, nint>(fresh[..(usable - 1)]), cache, cacheCount);
        page->PpRefCount = 1;
        if (_debug)
            DebugOnAlloc(page);
        return new NetMemRef(page);
    }

    private void CountSlow(ref PoolCounters stats)
    {
        if (_order > 0)
            stats.SlowHighOrder++;
        else
            stats.Slow++;
    }

    /// <summary>
    /// Puts pages the slow path set up into <paramref name="cache"/> as far as it has room (a callback may have
    /// filled it meanwhile), the rest into the ring, and releases what the ring refuses; all are released when the
    /// pool has been disposed meanwhile.
    /// </summary>
    private void StashSetUp<TCount>(ReadOnlySpan<nint> pages, Span<nint> cache, TCount cacheCount)
        where TCount : struct, ICacheCount
    {
        // Volatile: Dispose sets the state on another thread (or from a callback on this one).
        if (Volatile.Read(ref _state) != StateAlive)
        {
            ReturnPages(pages);
            return;
        }
        int count = cacheCount.Value;
        int room = Math.Min(pages.Length, cache.Length - count);
        pages[..room].CopyTo(cache[count..]);
        cacheCount.Value = count + room;
        pages = pages[room..];
        if (pages.IsEmpty)
            return;
        int enq = _ring.EnqueueBurst(pages);
        ReturnPages(pages[enq..]);
    }

    private int TakeFromProvider(Span<NetMemRef> fresh)
    {
        int admitted = AdmitSlowPath(fresh.Length);
        if (admitted == 0)
            return 0;
        int got;
        try
        {
            got = _provider.AllocBulk(fresh[..admitted], _order, _nid);
        }
        catch (ObjectDisposedException)
        {
            got = 0;
        }
        if (got == 0)
            CountAllocFailed();
        return got;
    }

    /// <summary>Traces pages the pool has just taken from the provider and counted in Hold (when tracing is on).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void TraceHold(ReadOnlySpan<NetMemRef> pages)
    {
        var log = PagePoolEventSource.Log;
        if (log.IsEnabled())
            TraceHold(log, pages);
    }

    private void TraceHold(PagePoolEventSource log, ReadOnlySpan<NetMemRef> pages)
    {
        if (log.IsEnabled(EventLevel.Informational, PagePoolEventSource.Keywords.SlowPath))
            log.SlowPathRefill(Id, pages.Length, _order);
        if (log.IsEnabled(EventLevel.Verbose, PagePoolEventSource.Keywords.PageState))
        {
            // The kernel reports each page with the hold count it took: number the new pages up to the total.
            long hold = TotalHold() - pages.Length;
            foreach (NetMemRef page in pages)
                log.StateHold(Id, (ulong)page.Address, ++hold, page.Index);
        }
    }

    /// <summary>
    /// The kernel's <c>page_pool_set_pp_info</c> plus DMA mapping; false when mapping failed (page given back).
    /// When the mapper or the init callback throws, the page is given back too (unmapped if it was mapped) and the
    /// exception goes on: the page never became the pool's.
    /// </summary>
    private bool SetupPage(NetMem* d)
    {
        var page = new NetMemRef(d);
        bool mapped = false;
        try
        {
            if (_dmaMap)
            {
                if (!_mapper.Map(page.Address, (nuint)page.Size, _dmaDir, out ulong dma))
                {
                    page.PutPage();
                    return false;
                }
                d->DmaAddr = dma;
                TrackDma(d);
                mapped = true;
                if (_dmaSync)
                    _mapper.SyncForDevice(dma + (ulong)_offset, (nuint)_maxLen, _dmaDir);
            }
            d->PpMagic = NetMemRef.PpSignature;
            d->Pp = _pp;
            d->PpRefCount = 0;
            _initCallback?.Invoke(page, _initArg);
        }
        catch
        {
            try
            {
                if (mapped)
                    UnmapTracked(d);
            }
            finally
            {
                d->PpMagic = 0;
                d->Pp = 0;
                d->DmaAddr = 0;
                page.PutPage();
            }
            throw;
        }
        if (_debug)
            DebugOnHold(d);
        return true;
    }

    /// <summary>Allocation from a thread other than the consumer: per-CPU cache, then ring, then provider.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private NetMemRef SharedAlloc() => SharedAlloc(PutterState.Current);

    /// <summary>Allocation by a thread other than the consumer, whose state <paramref name="s"/> the caller looked up.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private NetMemRef SharedAlloc(PutterState s)
    {
        ThrowIfDisposed();
        PerCpuCache? c = EnterPerCpu(s);
        if (c == null)
            return SharedAllocUncached();
        try
        {
            // Checked again inside the section: a Dispose that began after the check above revokes this cache and
            // waits for the section, so a refill from the provider here is counted before it decides whether
            // pages are in flight; one that began before it is seen here (the cache was acquired or kept after
            // its revocation), and nothing is taken.
            // Volatile: Dispose sets the state on another thread.
            if (Volatile.Read(ref _state) != StateAlive)
                PoolThrowHelper.ThrowDisposed(Id);
            NetMem* d;
            if (c.Count > 0)
            {
                d = (NetMem*)c.Items[--c.Count];
                ClaimForHandOut(d);
                c.Stats.Fast++;
            }
            else
            {
                c.Count = _ring.DequeueBurst(c.Items[..PerCpuCache.Batch]);
                int nid = _nid;
                if (nid >= 0 && c.Count > 0)
                    WaiveForeignNodes(nid, c.Items, ref c.Count, ref c.Stats);
                if (c.Count > 0)
                {
                    d = (NetMem*)c.Items[--c.Count];
                    ClaimForHandOut(d);
                    c.Stats.Refill++;
                }
                else
                {
                    c.Stats.Empty++;
                    NetMemRef fresh = AllocPagesSlow(ref c.Stats, c.Items, new PerCpuCacheCount(c));
                    return fresh;
                }
            }
            if (_debug)
                DebugOnAlloc(d);
            return new NetMemRef(d);
        }
        finally
        {
            ExitPerCpu(s);
            // Volatile: a Dispose that drained the caches before this refill filled one would have missed its pages.
            if (Volatile.Read(ref _state) != StateAlive)
                DrainAfterDisposeQuietly();
        }
    }

    /// <summary>Every per-CPU cache is busy: take one page straight from the ring, else one from the provider.</summary>
    private NetMemRef SharedAllocUncached()
    {
        if (_ring.TryDequeue(out nint p))
        {
            NetMem* d = (NetMem*)p;
            ClaimForHandOut(d);
            Interlocked.Increment(ref _shared.Refill);
            if (_debug)
                DebugOnAlloc(d);
            return new NetMemRef(d);
        }
        Interlocked.Increment(ref _shared.Empty);
        BeginTake();
        try
        {
            // Volatile: as above.
            if (Volatile.Read(ref _state) != StateAlive)
                PoolThrowHelper.ThrowDisposed(Id);
            NetMemRef fresh = default;
            if (TakeFromProvider(new Span<NetMemRef>(ref fresh)) == 0)
                return default;
            if (!SetupPage(fresh.Descriptor))
                return default;
            Interlocked.Increment(ref _shared.Hold);
            Interlocked.Increment(ref _order > 0 ? ref _shared.SlowHighOrder : ref _shared.Slow);
            TraceHold(new ReadOnlySpan<NetMemRef>(in fresh));
            fresh.Value.PpRefCount = 1;
            if (_debug)
                DebugOnAlloc(fresh.Descriptor);
            return fresh;
        }
        finally
        {
            EndTake();
        }
    }

    /// <summary>
    /// Opens a provider take whose pages are about to be set up: until <see cref="EndTake"/>, the pool is not freed
    /// (see <see cref="ReleaseAttempt"/>), since an init callback or DMA mapper may dispose it before the pages set
    /// up so far are counted in Hold.
    /// </summary>
    private void BeginTake() =>
        // Interlocked (a full fence before the caller's state check and setup): either the take sees the pool
        // closing, or a release attempt sees the take under way.
        Interlocked.Increment(ref _takesUnderWay);

    /// <summary>Closes a take opened by <see cref="BeginTake"/>, once every page it kept is counted in Hold.</summary>
    private void EndTake()
    {
        // Interlocked (a full fence after the take's Holds): a release attempt that reads 0 here sees them. And the
        // state read after it: a Dispose that saw this take under way left the complete drain undone, so the last
        // take to finish does it, and the pool is freed as soon as its pages come back rather than on the retry
        // timer's next tick.
        if (Interlocked.Decrement(ref _takesUnderWay) == 0 && Volatile.Read(ref _state) == StateDestroying)
            CompleteDrainQuietly();
    }

    /// <summary>
    /// Opens a section that uses the calling thread's per-CPU cache of this pool (see <see cref="PerCpuCache"/>):
    /// the cache it already holds, with no atomic operation, or one acquired now. Null when none can be had (every
    /// cache held by other threads, or a nested call from inside a section); the caller then uses the ring
    /// directly, and has no section to close. Otherwise close it with <see cref="ExitPerCpu"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private PerCpuCache? EnterPerCpu(PutterState s)
    {
        PerCpuCache? c = TryEnterHeldPerCpu(s);
        if (c != null || s.IsBusy)
            return c;
        // Volatile: as in TryEnterHeldPerCpu; the acquire runs inside the section.
        Volatile.Write(ref s.Section, s.Section + 1);
        return EnterPerCpuSlow(s);
    }

    /// <summary>
    /// Opens a section on the per-CPU cache of this pool that the calling thread already holds, with no atomic
    /// operation. Null, with no section open, when the thread holds none of this pool's (or lost it to a drain) or
    /// is already inside a section. Otherwise close it with <see cref="ExitPerCpu"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private PerCpuCache? TryEnterHeldPerCpu(PutterState s)
    {
        int section = s.Section;
        PerCpuCache? c = s.Cache;
        if ((section & 1) != 0 || c == null || !ReferenceEquals(c.Pool, this))
            return null;
        // Volatile: keeps the compiler from moving this store past the owner check below (a plain store on x64).
        // The processor may still reorder the two; a revoking drainer's process-wide barrier orders them for it:
        // either it sees the section open and waits for ExitPerCpu, or the check sees the cache gone.
        Volatile.Write(ref s.Section, section + 1);
        if (c.IsHeldBy(s))
            return c;
        // Volatile (release): as in ExitPerCpu.
        Volatile.Write(ref s.Section, section + 2);
        return null;
    }

    /// <summary>The thread holds no cache of this pool (or lost it to a drain): let go of the old one, acquire one.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private PerCpuCache? EnterPerCpuSlow(PutterState s)
    {
        PerCpuCache? held = s.Cache;
        s.Cache = null;
        held?.TryRelease(s);            // another pool's cache; false when a drain took it meanwhile
        PerCpuCache[] caches = _perCpu;
        int start = (int)((uint)Thread.GetCurrentProcessorId() % (uint)caches.Length);
        for (int i = 0; i < caches.Length; i++)
        {
            PerCpuCache c = caches[(start + i) % caches.Length];
            // The busy mark is already set: a drain that revokes the cache right after this CAS waits for us.
            if (!c.TryAcquire(s))
                continue;
            c.Acquisitions++;
            s.Cache = c;
            return c;
        }
        ExitPerCpu(s);
        return null;
    }

    /// <summary>
    /// For tests, a racy sum over the per-CPU caches: how many times threads acquired one (sticky ownership keeps
    /// this per batch, not per call) and how many pages they hold now.
    /// </summary>
    internal (long Acquisitions, int Pooled) PerCpuSnapshot()
    {
        long acquisitions = 0;
        int pooled = 0;
        foreach (PerCpuCache c in _perCpu)
        {
            // Volatile: written by each cache's holder.
            acquisitions += Volatile.Read(ref c.Acquisitions);
            pooled += Volatile.Read(ref c.Count);
        }
        return (acquisitions, pooled);
    }

    /// <summary>
    /// Takes every per-CPU cache (only those holding pages when <paramref name="onlyNonEmpty"/>), revoking held ones,
    /// and hands each to <paramref name="empty"/>, which must leave it empty. A cache held by another thread while
    /// the calling thread is inside a section is skipped. Drains run one at a time; one process-wide barrier
    /// covers all the caches a drain revokes, however many CPUs there are.
    /// Returns false when a cache was skipped or the drain declined (see <see cref="EnterDrain"/>).
    /// </summary>
    private bool EmptyPerCpuCaches<TState>(TState state, bool onlyNonEmpty, Action<PerCpuCache, TState> empty)
    {
        if (!EnterDrain())
            return false;
        PerCpuCache[] caches = _perCpu;
        // Owned by the drain lock's holder: which caches this drain took, and from which holders.
        PutterState?[] revoked = _drainRevoked;
        bool[] taken = _drainTaken;
        bool complete = true;
        Exception? failed = null;
        try
        {
            bool anyRevoked = false;
            for (int i = 0; i < caches.Length; i++)
            {
                PerCpuCache c = caches[i];
                // Volatile: Count is written by the cache's holder; an empty cache needs no revocation.
                if (onlyNonEmpty && Volatile.Read(ref c.Count) == 0)
                    continue;
                switch (c.BeginDrain(out revoked[i]))
                {
                    case DrainTake.Skipped:
                        complete = false;
                        break;
                    case DrainTake.Free:
                        taken[i] = true;
                        break;
                    case DrainTake.Revoked:
                        taken[i] = true;
                        anyRevoked = true;
                        break;
                }
            }
            if (anyRevoked)
            {
                // One barrier for every cache revoked above (see PerCpuCache): each thread executes a full barrier,
                // after which a holder either is seen in its section below or sees its cache gone.
                Interlocked.MemoryBarrierProcessWide();
                for (int i = 0; i < caches.Length; i++)
                {
                    if (revoked[i] is { } holder)
                        PerCpuCache.AwaitRevoked(holder);
                }
            }
            for (int i = 0; i < caches.Length; i++)
            {
                if (!taken[i])
                    continue;
                // A cache whose emptying threw (a release's unmap) does not keep the others from being emptied.
                try
                {
                    empty(caches[i], state);
                }
                catch (Exception e)
                {
                    failed ??= e;
                }
            }
        }
        finally
        {
            // Every cache taken goes back, even when emptying one threw.
            for (int i = 0; i < caches.Length; i++)
            {
                revoked[i] = null;
                if (!taken[i])
                    continue;
                taken[i] = false;
                caches[i].ReleaseDrained();
            }
            _perCpuDrainLock.Exit();
        }
        RethrowIfAny(failed);
        return complete;
    }

    /// <summary>
    /// Takes the drain lock, or declines: a drain nested in another on the same thread (a DMA mapper or event
    /// handler called while a drain releases pages) would take caches the outer drain holds, and a drain from
    /// inside a per-CPU section must not block on a drain that may be waiting for that section. Those drains do
    /// nothing; a Dispose's retry timer finishes the job.
    /// </summary>
    private bool IsDrainingOnThisThread => _perCpuDrainLock.IsHeldByCurrentThread;

    private bool EnterDrain()
    {
        if (IsDrainingOnThisThread)
            return false;
        if (PutterState.InSection)
            return _perCpuDrainLock.TryEnter();
        _perCpuDrainLock.Enter();
        return true;
    }

    /// <summary>Closes the section <see cref="EnterPerCpu"/> opened.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ExitPerCpu(PutterState s) =>
        // Volatile (release): the section's writes to the cache happen before a drainer sees the number move on.
        Volatile.Write(ref s.Section, s.Section + 1);

    /// <summary>
    /// Inside a section, after a flush to the ring: a holder that now runs on another CPU lets its cache go, so
    /// the next call takes the cache of the CPU it is on (the CPU is a hint; this keeps it a good one).
    /// </summary>
    private void LetGoIfMigrated(PutterState s, PerCpuCache c)
    {
        if ((int)((uint)Thread.GetCurrentProcessorId() % (uint)_perCpu.Length) == c.Cpu)
            return;
        s.Cache = null;
        c.TryRelease(s);
    }

    // =====================================================================================================
    // Put and recycle
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_put_page</c>: drops one <c>pp_ref_count</c> reference; the last one recycles the
    /// page (into the alloc cache when <paramref name="allowDirect"/> and on the consumer thread, else through the
    /// per-CPU cache and the ring), or releases it when someone else holds a page reference.
    /// </summary>
    /// <param name="page">A page of this pool.</param>
    /// <param name="dmaSyncSize">Bytes the device may have written, synced for the device on recycle (DmaSyncDev); -1 for <see cref="PagePoolOptions.MaxLen"/>.</param>
    /// <param name="allowDirect">Recycle into the alloc cache; honoured only on the consumer thread.</param>
    /// <exception cref="InvalidOperationException">
    /// The page is not a page-pool page, belongs to another pool, or has no reference left (a double put).
    /// The pool is unchanged.
    /// </exception>
    public void PutPage(NetMemRef page, int dmaSyncSize = -1, bool allowDirect = false)
    {
        PutterState s = PutterState.Current;
        if (IsConsumer(s))
            ConsumerPut(page, dmaSyncSize, allowDirect);
        else if (!TryPutPerCpuFast(s, page.Descriptor))
            SharedPut(s, page, dmaSyncSize);
    }

    /// <summary>Consumer thread only: <see cref="PutPage(NetMemRef, int, bool)"/> through the alloc cache or the consumer's put buffer.</summary>
    private void ConsumerPut(NetMemRef page, int dmaSyncSize, bool allowDirect)
    {
        NetMem* d = CheckOwned(page);
        if (!UnrefAndTest(d))
            return;
        if (allowDirect)
            RecycleDirectUnrefed(d, dmaSyncSize);
        else if (CanRecycle(d, dmaSyncSize))
            ConsumerRecycleInRing(d);
    }

    /// <summary>
    /// A put from a thread other than the consumer when everything is ordinary (as for
    /// <see cref="TryConsumerRecycleFast"/>: a single-reference page of this pool, no debug, no DMA sync, not
    /// disposed) and the thread holds a per-CPU cache of this pool with room short of its flush point: the page
    /// goes in with plain stores inside a section (see <see cref="PerCpuCache"/>), and no check is repeated. False,
    /// with nothing changed, sends the caller to the checked path, which also acquires and flushes caches.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryPutPerCpuFast(PutterState s, NetMem* d)
    {
        // Volatile: Dispose drops the limit to 0 on another thread; a put that misses it is caught after its
        // section, as in AfterSection.
        if (Volatile.Read(ref _recycleLimit) == 0 || !IsOrdinaryLastReference(d))
            return false;
        PerCpuCache? c = TryEnterHeldPerCpu(s);
        if (c == null)
            return false;
        bool put = false;
        int count = c.Count;
        if (count < PerCpuCache.Capacity - 1)
        {
            d->PpRefCount = 0;
            Unsafe.Add(ref c.ItemsRef, count) = (nint)d;
            c.Count = count + 1;
            c.Stats.Ring++;
            put = true;
        }
        ExitPerCpu(s);
        // Volatile: as in AfterSection, a Dispose that drained the caches before the page went in missed it.
        if (put && Volatile.Read(ref _state) != StateAlive)
            DrainAfterDisposeQuietly();
        return put;
    }

    /// <summary>A thread other than the consumer: the checked put, through the per-CPU cache and the ring.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void SharedPut(PutterState s, NetMemRef page, int dmaSyncSize)
    {
        NetMem* d = CheckOwned(page);
        if (UnrefAndTest(d))
            RecycleUnrefed(s, d, dmaSyncSize);
    }

    /// <summary><see cref="PutPage(NetMemRef, int, bool)"/> for a raw address anywhere inside the page.</summary>
    /// <exception cref="InvalidOperationException">The address is in no live page of a region, or see the other overload.</exception>
    public void PutPage(byte* address, int dmaSyncSize = -1, bool allowDirect = false) =>
        PutPage(ResolveAddress(address), dmaSyncSize, allowDirect);

    /// <summary>The kernel's <c>page_pool_put_full_page</c>: <see cref="PutPage(NetMemRef, int, bool)"/> syncing <see cref="PagePoolOptions.MaxLen"/> bytes.</summary>
    public void PutFullPage(NetMemRef page, bool allowDirect = false) => PutPage(page, -1, allowDirect);

    /// <summary><see cref="PutFullPage(NetMemRef, bool)"/> for a raw address.</summary>
    public void PutFullPage(byte* address, bool allowDirect = false) => PutPage(ResolveAddress(address), -1, allowDirect);

    /// <summary>
    /// The kernel's <c>page_pool_recycle_direct</c>: <see cref="PutFullPage(NetMemRef, bool)"/> with direct
    /// recycling, which is honoured only on the consumer thread (elsewhere the page takes the ring path). For a
    /// check-free fast path, use the <see cref="PagePoolConsumer"/> handle.
    /// </summary>
    public void RecycleDirect(NetMemRef page) => PutPage(page, -1, allowDirect: true);

    /// <summary><see cref="RecycleDirect(NetMemRef)"/> for a raw address (the kernel's netmem-or-page form).</summary>
    public void RecycleDirect(byte* address) => PutPage(ResolveAddress(address), -1, allowDirect: true);

    /// <summary>
    /// The kernel's <c>page_pool_put_netmem_bulk</c>: puts many pages, recycling those whose last reference
    /// this drops through the ring in one batch. All pages are checked before any is put.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// One page is invalid (see <see cref="PutPage(NetMemRef, int, bool)"/>); none was put. Or a page is listed more
    /// times than it is referenced: the puts before the extra one went through.
    /// </exception>
    public void PutPages(ReadOnlySpan<NetMemRef> pages)
    {
        if (!TryPutPagesFast(pages))
            PutPagesChecked(pages);
    }

    /// <summary>
    /// A bulk put when every page is ordinary (as for <see cref="TryPutPerCpuFast"/>: a single-reference page of
    /// this pool, no debug, no DMA sync, not disposed): one pass drops each page's reference as it checks it, then
    /// the whole batch goes in copies of up to a buffer's room into the consumer's put buffer (on the consumer
    /// thread) or the per-CPU cache (one section for the call), with one thread-state lookup. A page that is not
    /// ordinary (or is listed twice: its count is already 0 at its second place) undoes what the pass did, every
    /// count back to 1 as the caller handed it in, and false sends the caller to the checked path with nothing
    /// changed.
    /// </summary>
    private bool TryPutPagesFast(ReadOnlySpan<NetMemRef> pages)
    {
        // Volatile: as in TryPutPerCpuFast.
        if (Volatile.Read(ref _recycleLimit) == 0 || pages.IsEmpty)
            return false;
        PutterState s = PutterState.Current;
        ref NetMemRef first = ref MemoryMarshal.GetReference(pages);
        int n = pages.Length;
        int i = 0;
        for (; i < n; i++)
        {
            NetMem* d = Unsafe.Add(ref first, i).Descriptor;
            if (!IsOrdinaryLastReference(d))
                break;
            d->PpRefCount = 0;
        }
        if (i < n)
        {
            // The caller held one reference on each of these (they were ordinary when the pass reached them).
            for (int k = 0; k < i; k++)
                Unsafe.Add(ref first, k).Descriptor->PpRefCount = 1;
            return false;
        }
        // NetMemRef is one descriptor pointer wide: the batch is the descriptors' addresses as they are.
        ReadOnlySpan<nint> batch = MemoryMarshal.Cast<NetMemRef, nint>(pages);
        if (IsConsumer(s))
        {
            if (!TryAppendPutBufferFast(batch))
                ConsumerRecycleInRingBulk(batch);
        }
        else if (!TryAppendPerCpuFast(s, batch))
        {
            RecycleInRingBulk(s, batch);
        }
        return true;
    }

    /// <summary>
    /// Consumer thread only, for an ordinary batch (see <see cref="TryPutPagesFast"/>): appends it to the put buffer
    /// with plain stores when it fits short of the flush point, as <see cref="ConsumerRecycleInRing"/> does for one
    /// page, so a short burst pays no call and no copy routine. False, with nothing changed, when it would fill the
    /// buffer: the caller takes the flushing path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryAppendPutBufferFast(ReadOnlySpan<nint> pages)
    {
        int count = _hot.PutCount;
        int n = pages.Length;
        if (n >= PerCpuCache.Capacity - count)
            return false;
        CopyShort(pages, ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_putBuffer), count));
        _hot.Stats.Ring += n;
        _hot.PutCount = count + n;
        return true;
    }

    /// <summary>
    /// Copies a burst of at most a buffer's length with a plain loop: measured faster than a call to the copy routine
    /// for the few entries a short burst has. The caller checked the room.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyShort(ReadOnlySpan<nint> from, ref nint to)
    {
        ref nint first = ref MemoryMarshal.GetReference(from);
        for (int i = 0; i < from.Length; i++)
            Unsafe.Add(ref to, i) = Unsafe.Add(ref first, i);
    }

    /// <summary>
    /// A thread other than the consumer, for an ordinary batch (see <see cref="TryPutPagesFast"/>): when the thread
    /// holds a per-CPU cache of this pool with room for the whole batch short of its flush point, the batch goes in
    /// with plain stores inside one section, as <see cref="TryPutPerCpuFast"/> does for one page. False, with
    /// nothing changed, sends the caller to <see cref="RecycleInRingBulk(PutterState, ReadOnlySpan{nint})"/>, which
    /// also acquires and flushes caches.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryAppendPerCpuFast(PutterState s, ReadOnlySpan<nint> pages)
    {
        PerCpuCache? c = TryEnterHeldPerCpu(s);
        if (c == null)
            return false;
        bool put = false;
        int count = c.Count;
        int n = pages.Length;
        if (n < PerCpuCache.Capacity - count)
        {
            CopyShort(pages, ref Unsafe.Add(ref c.ItemsRef, count));
            c.Count = count + n;
            c.Stats.Ring += n;
            put = true;
        }
        ExitPerCpu(s);
        // Volatile: as in AfterSection, a Dispose that drained the caches before the pages went in missed them.
        if (put && Volatile.Read(ref _state) != StateAlive)
            DrainAfterDisposeQuietly();
        return put;
    }

    /// <summary>
    /// Consumer thread only: <see cref="ConsumerRecycleInRing"/> for a batch, copied into the put buffer up to its
    /// flush point at a time. A flush whose release throws leaves room; the rest of the batch still goes in and the
    /// first exception is rethrown at the end.
    /// </summary>
    private void ConsumerRecycleInRingBulk(ReadOnlySpan<nint> pages) =>
        RethrowIfAny(AppendFlushingToRing(_putBuffer, ref _hot.PutCount, ref _hot.Stats, pages, out _));

    /// <summary>
    /// Owner of <paramref name="items"/> only (a per-CPU cache or the consumer's put buffer): appends
    /// <paramref name="pages"/> after the <paramref name="count"/> valid ones, counted as ring, moving the oldest half
    /// to the ring (<see cref="FlushToRing"/>) each time the buffer fills. The buffer is never left full, so there is
    /// room on entry; a flush whose release throws still leaves room, the rest of the batch goes in and nothing is
    /// dropped. Returns the first exception a flush threw, for the caller to rethrow after its section.
    /// </summary>
    private Exception? AppendFlushingToRing(Span<nint> items, ref int count, ref PoolCounters stats, ReadOnlySpan<nint> pages, out bool flushed)
    {
        Exception? failed = null;
        flushed = false;
        while (!pages.IsEmpty)
        {
            int n = count;
            int k = Math.Min(items.Length - n, pages.Length);
            pages[..k].CopyTo(items[n..]);
            count = n + k;
            stats.Ring += k;
            pages = pages[k..];
            if (n + k == items.Length)
            {
                flushed = true;
                try
                {
                    FlushToRing(items, ref count, ref stats);
                }
                catch (Exception e)
                {
                    failed ??= e;
                }
            }
        }
        return failed;
    }

    /// <summary><see cref="PutPages(ReadOnlySpan{NetMemRef})"/> with every check: all pages first, then each put.</summary>
    [SkipLocalsInit] // the stack buffer is written before it is read
    private void PutPagesChecked(ReadOnlySpan<NetMemRef> pages)
    {
        foreach (NetMemRef page in pages)
            CheckOwned(page);
        Span<nint> recyclable = stackalloc nint[PerCpuCache.Capacity];
        Exception? failed = null;
        while (!pages.IsEmpty)
        {
            int n = 0;
            int used = 0;
            for (; used < pages.Length && n < recyclable.Length; used++)
            {
                NetMem* d = pages[used].Descriptor;
                if (d->PpRefCount <= 0)
                {
                    // Listed more times than referenced: it passed the check above more than once. Recycle what
                    // this batch already unreferenced, so no page is lost, and refuse the extra put.
                    RecycleInRingBulk(recyclable[..n]);
                    PoolThrowHelper.ThrowDoublePut(pages[used]);
                }
                if (!UnrefAndTest(d))
                    continue;
                bool recycle;
                try
                {
                    recycle = CanRecycle(d, -1);
                }
                catch (Exception e)
                {
                    // That page was released (or is stuck in flight if its release threw); the batch goes on.
                    failed ??= e;
                    continue;
                }
                if (recycle)
                    recyclable[n++] = (nint)d;
            }
            pages = pages[used..];
            // A release that throws in a flush (a DMA mapper's unmap) does not stop the batch: every page this call
            // unreferenced is recycled or released, and the first exception is rethrown at the end.
            if (OnConsumerThread())
            {
                // The consumer's own put buffer: plain stores, flushed to the ring in batches.
                foreach (nint p in recyclable[..n])
                {
                    try
                    {
                        ConsumerRecycleInRing((NetMem*)p);
                    }
                    catch (Exception e)
                    {
                        failed ??= e;
                    }
                }
            }
            else
            {
                try
                {
                    RecycleInRingBulk(recyclable[..n]);
                }
                catch (Exception e)
                {
                    failed ??= e;
                }
            }
        }
        RethrowIfAny(failed);
    }

    /// <summary><see cref="PutPages(ReadOnlySpan{NetMemRef})"/> for raw addresses, each anywhere inside its page.</summary>
    /// <exception cref="InvalidOperationException">An address is in no live page, or a page is invalid; none was put.</exception>
    [SkipLocalsInit] // the stack buffer is written before it is read
    public void PutPages(ReadOnlySpan<nint> addresses)
    {
        Span<NetMemRef> pages = addresses.Length <= 64 ? stackalloc NetMemRef[addresses.Length] : new NetMemRef[addresses.Length];
        for (int i = 0; i < addresses.Length; i++)
            pages[i] = ResolveAddress((byte*)addresses[i]);
        PutPages(pages);
    }

    /// <summary>
    /// The kernel's <c>page_pool_unref_netmem</c>: drops <paramref name="nr"/> references at once.
    /// </summary>
    /// <returns>
    /// References left; 0 means the caller dropped the last one and now owns the page alone: as the kernel does,
    /// the count is reset to 1, and the page goes back with <see cref="PutUnrefedPage"/> (or
    /// <see cref="PutPage(NetMemRef, int, bool)"/>, or <see cref="ReleasePage(NetMemRef)"/>).
    /// </returns>
    /// <exception cref="InvalidOperationException">
    /// Not this pool's page, or fewer than <paramref name="nr"/> references held (on a fragment page being cut:
    /// more than the pieces handed out, which would drop the bias the pool holds). The count is unchanged.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nr"/> is not positive.</exception>
    public long UnrefPage(NetMemRef page, long nr)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(nr);
        NetMem* d = CheckOwned(page);
        return UnrefNetmem(d, nr);
    }

    /// <summary>
    /// The kernel's <c>page_pool_put_unrefed_netmem</c> (<c>page_pool_put_unrefed_page</c>): gives back a page whose
    /// last reference the caller dropped with <see cref="UnrefPage(NetMemRef, long)"/> (it returned 0), recycling
    /// it as <see cref="PutPage(NetMemRef, int, bool)"/> does, with no reference left to drop.
    /// </summary>
    /// <param name="page">A page of this pool that <see cref="UnrefPage(NetMemRef, long)"/> took to 0.</param>
    /// <param name="dmaSyncSize">Bytes the device may have written, synced for the device on recycle (DmaSyncDev); -1 for <see cref="PagePoolOptions.MaxLen"/>.</param>
    /// <param name="allowDirect">Recycle into the alloc cache; honoured only on the consumer thread.</param>
    /// <exception cref="InvalidOperationException">
    /// Not this pool's page, already back in the pool (a double put), or still referenced by someone else. The
    /// pool is unchanged.
    /// </exception>
    public void PutUnrefedPage(NetMemRef page, int dmaSyncSize, bool allowDirect)
    {
        NetMem* d = CheckUnrefed(page);
        PutterState s = PutterState.Current;
        if (!IsConsumer(s))
            RecycleUnrefed(s, d, dmaSyncSize);
        else if (allowDirect)
            RecycleDirectUnrefed(d, dmaSyncSize);
        else if (CanRecycle(d, dmaSyncSize))
            ConsumerRecycleInRing(d);
    }

    /// <summary>Consumer thread only: <see cref="PutUnrefedPage"/> from the consumer handle.</summary>
    internal void ConsumerPutUnrefed(NetMemRef page, int dmaSyncSize, bool allowDirect)
    {
        NetMem* d = CheckUnrefed(page);
        if (allowDirect)
            RecycleDirectUnrefed(d, dmaSyncSize);
        else if (CanRecycle(d, dmaSyncSize))
            ConsumerRecycleInRing(d);
    }

    /// <summary>
    /// Checks a page given to <see cref="PutUnrefedPage"/>: this pool's, held by the caller alone (the count
    /// <see cref="UnrefNetmem"/> reset to 1); takes that reference, so the page is the caller's to recycle.
    /// </summary>
    private NetMem* CheckUnrefed(NetMemRef page)
    {
        NetMem* d = CheckOwned(page);
        // Volatile: a count above 1 may be falling on another thread right now; only 1 means the caller owns it.
        if (Volatile.Read(ref d->PpRefCount) != 1)
            PoolThrowHelper.ThrowStillReferenced(page);
        d->PpRefCount = 0;
        return d;
    }

    /// <summary><see cref="UnrefPage(NetMemRef, long)"/> for a raw address inside the page.</summary>
    public long UnrefPage(byte* address, long nr) => UnrefPage(ResolveAddress(address), nr);

    /// <summary>
    /// The kernel's <c>page_pool_release_page</c>/<c>page_pool_return_page</c>: takes a page the caller owns
    /// (its only pool reference) out of the pool for good: unmaps it, clears pp_magic and pp, and gives it back
    /// to the provider once no page reference remains.
    /// </summary>
    /// <exception cref="InvalidOperationException">Not this pool's page, or not held by exactly one reference.</exception>
    public void ReleasePage(NetMemRef page)
    {
        NetMem* d = CheckOwned(page);
        // Volatile: another holder might be dropping a reference right now; we need the current count.
        if (Volatile.Read(ref d->PpRefCount) != 1)
            PoolThrowHelper.ThrowNotSoleOwner(page);
        d->PpRefCount = 0;
        ReturnPage(d);
    }

    /// <summary><see cref="ReleasePage(NetMemRef)"/> for a raw address.</summary>
    public void ReleasePage(byte* address) => ReleasePage(ResolveAddress(address));

    /// <summary>Takes an extra pool reference on a page (the kernel's <c>page_pool_ref_netmem</c>).</summary>
    /// <exception cref="InvalidOperationException">Not this pool's page, or not currently referenced.</exception>
    public void RefPage(NetMemRef page)
    {
        NetMem* d = CheckOwned(page);
        // Interlocked: other holders may drop references concurrently.
        Interlocked.Increment(ref d->PpRefCount);
    }

    /// <summary>
    /// Validates that <paramref name="page"/> is this pool's and referenced; returns its descriptor. Every put
    /// starts here: the checks are the kernel's pp_magic/pp tests plus a reference-count underflow test.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal NetMem* CheckOwned(NetMemRef page)
    {
        // A freed pool may have given its regions back to the OS: never touch a descriptor then.
        if (_state == StateFreed)
            PoolThrowHelper.ThrowDisposed(Id);
        NetMem* d = page.Descriptor;
        if (d == null || (d->PpMagic & NetMemRef.PpMagicMask) != NetMemRef.PpSignature || d->Pp != _pp)
            PoolThrowHelper.ThrowNotOurs(page, _pp, Id);
        if (d->PpRefCount <= 0)
            PoolThrowHelper.ThrowDoublePut(page);
        if (_debug)
            DebugCheckFragCookies(d);
        return d;
    }

    private static NetMemRef ResolveAddress(byte* address)
    {
        NetMemRef page = NetMemRef.FromAddress(address);
        if (page.IsNull)
            PoolThrowHelper.ThrowForeignAddress(address);
        return page;
    }

    /// <summary>
    /// The kernel's <c>page_pool_unref_and_test</c>: drops one reference; true when it was the last. The common
    /// single-owner case reads the count and writes zero without an atomic operation. The caller checked that the
    /// page is this pool's (<see cref="CheckOwned"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool UnrefAndTest(NetMem* d)
    {
        long count = d->PpRefCount;
        if (count == 1)
        {
            if (_debug)
                return UnrefLastChecked(d);
            // We hold the only reference: nobody else can touch the count now (a second put of the same page at
            // the same moment is a caller's bug that this plain store lets through; ClaimForHandOut catches it).
            d->PpRefCount = 0;
            return true;
        }
        return UnrefSlow(d, 1) == 0;
    }

    /// <summary>
    /// Debug mode: the single-owner put with an atomic operation, so that of two puts of one page at the same
    /// moment exactly one succeeds and the other throws as a double put, at the put that did it.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool UnrefLastChecked(NetMem* d)
    {
        RaceHooks.At(RaceHooks.DebugSingleRefPut);
        // Interlocked: another thread may be putting the same page right now (the caller's bug to report).
        if (Interlocked.CompareExchange(ref d->PpRefCount, 0, 1) == 1)
            return true;
        return UnrefSlow(d, 1) == 0;
    }

    /// <summary>
    /// The kernel's <c>page_pool_unref_netmem</c>: drops <paramref name="nr"/> references; when they were the last,
    /// the count goes back to 1 (the caller now holds the page alone, as one reference) and 0 is returned. A page
    /// whose count carries the pool's fragment bias always takes the checked path, which refuses to drop any of
    /// the bias.
    /// </summary>
    private long UnrefNetmem(NetMem* d, long nr)
    {
        long count = d->PpRefCount;
        if (count == nr && count <= FragBiasFloor)
        {
            // The caller holds every reference: nobody else can touch the count now.
            d->PpRefCount = 1;
            return 0;
        }
        long left = UnrefSlow(d, nr);
        // The last reference dropped: this caller owns the page alone and may write the count with a plain store.
        if (left == 0)
            d->PpRefCount = 1;
        return left;
    }

    /// <summary>
    /// The atomic drop of <paramref name="nr"/> references, for a page of this pool. Once the count has moved,
    /// another thread may finish with the page (the last put of a fragment page that a drain or Dispose released,
    /// and with it the pool and its regions): nothing after the drop reads the descriptor unless this call holds
    /// the page (the count it left is 0, or it took more than it may and restores them).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private long UnrefSlow(NetMem* d, long nr)
    {
        // Interlocked: several holders of one page (fragments, shared packets) drop references concurrently;
        // exactly one of them sees zero.
        long left = Interlocked.Add(ref d->PpRefCount, -nr);
        RaceHooks.At(RaceHooks.AfterUnrefSlow);
        if (left < 0)
        {
            Interlocked.Add(ref d->PpRefCount, nr);
            PoolThrowHelper.ThrowDoublePut(new NetMemRef(d));
        }
        if (left > FragBiasFloor)
        {
            // The count still carries a fragment bias: checked against this pool's own frag state, no descriptor read.
            if (FragOverReleased(d, left))
            {
                Interlocked.Add(ref d->PpRefCount, nr);
                FragThrowHelper.ThrowFragOverRelease(new NetMemRef(d));
            }
        }
        else if (left + nr > FragBiasFloor && IsFragPageBeingCut(d))
        {
            // The drop went through the bias the pool holds on a fragment page it is cutting (UnrefPage of more
            // references than users hold): the pool would go on cutting a page nobody references. Put them back.
            // A page a driver split itself (FragmentPage) may carry any bias: its drain is the driver's to size.
            Interlocked.Add(ref d->PpRefCount, nr);
            FragThrowHelper.ThrowFragOverRelease(new NetMemRef(d));
        }
        return left;
    }

    /// <summary>
    /// The kernel's <c>__page_pool_page_can_be_recycled</c> plus the sync for device: true when the page may
    /// go back to a cache; otherwise the page has been released (released_refcnt, or the pool is destroying).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool CanRecycle(NetMem* d, int dmaSyncSize)
    {
        // Volatile: _state flips once, from any thread, in Dispose; a late put must see it and release.
        if (d->RefCount != 1 || Volatile.Read(ref _state) != StateAlive)
        {
            ReleaseUnrecyclable(d);
            return false;
        }
        if (_dmaSync)
            SyncForDeviceOrRelease(d, dmaSyncSize);
        if (_debug)
            DebugOnPut(d);
        return true;
    }

    /// <summary>
    /// The recycle's sync for the device. A mapper that throws leaves the page unfit for the device and no one's:
    /// it goes back to the provider before the exception goes on, so it is not lost.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void SyncForDeviceOrRelease(NetMem* d, int dmaSyncSize)
    {
        try
        {
            SyncForDevice(d, dmaSyncSize);
        }
        catch
        {
            ReturnPage(d);
            throw;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReleaseUnrecyclable(NetMem* d)
    {
        if (d->RefCount != 1)
            Interlocked.Increment(ref _shared.ReleasedRefcnt);
        ReturnPage(d);
    }

    private void SyncForDevice(NetMem* d, int dmaSyncSize)
    {
        uint size = dmaSyncSize < 0 ? (uint)_maxLen : Math.Min((uint)dmaSyncSize, (uint)_maxLen);
        _mapper.SyncForDevice(d->DmaAddr + (ulong)_offset, size, _dmaDir);
    }

    /// <summary>Consumer thread only: the last reference was dropped; recycle into the alloc cache.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void RecycleDirectUnrefed(NetMem* d, int dmaSyncSize)
    {
        if (!CanRecycle(d, dmaSyncSize))
            return;
        // Plain read: DisableDirectRecycling sets it once, with the consumer quiescent or on this thread. Refused
        // direct recycling is a put without allowDirect (the ring), not a full cache.
        if (_directRecyclingDisabled != 0)
        {
            ConsumerRecycleInRing(d);
            return;
        }
        int count = CacheCount;
        if ((uint)count < AllocCacheSize)
        {
            Unsafe.Add(ref CacheRef, count) = (nint)d;
            CacheCount = count + 1;
            _hot.Stats.Cached++;
            return;
        }
        _hot.Stats.CacheFull++;
        // Plain read of a flag Trim sets from another thread: seeing it late only delays the trim.
        if (_consumerTrimPending != 0)
        {
            ConsumerTrimThenRecycle(d);
            return;
        }
        ConsumerRecycleInRing(d);
    }

    /// <summary>Consumer thread only, at a full alloc cache: the trim another thread asked for, then the ring.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ConsumerTrimThenRecycle(NetMem* d)
    {
        try
        {
            ConsumerTrimDeferred();
        }
        finally
        {
            // Even when a release in the trim throws: this page is not lost with it.
            ConsumerRecycleInRing(d);
        }
    }

    /// <summary>Consumer thread only: page_pool_recycle_in_ring through the consumer's put buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ConsumerRecycleInRing(NetMem* d)
    {
        int count = _hot.PutCount;
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_putBuffer), count) = (nint)d;
        _hot.Stats.Ring++;
        _hot.PutCount = ++count;
        if (count == PerCpuCache.Capacity)
            FlushToRing(_putBuffer, ref _hot.PutCount, ref _hot.Stats);
    }

    /// <summary>Any thread: the last reference was dropped; recycle through the per-CPU cache and the ring.</summary>
    internal void RecycleUnrefed(NetMem* d, int dmaSyncSize) => RecycleUnrefed(PutterState.Current, d, dmaSyncSize);

    /// <summary>As <see cref="RecycleUnrefed(NetMem*, int)"/>, for a thread whose state <paramref name="s"/> the caller looked up.</summary>
    private void RecycleUnrefed(PutterState s, NetMem* d, int dmaSyncSize)
    {
        if (CanRecycle(d, dmaSyncSize))
            RecycleInRing(s, d);
    }

    /// <summary>
    /// The kernel's <c>page_pool_recycle_in_ring</c>, fronted by the per-CPU cache, for the thread whose state
    /// <paramref name="s"/> the caller looked up.
    /// </summary>
    private void RecycleInRing(PutterState s, NetMem* d)
    {
        PerCpuCache? c = EnterPerCpu(s);
        if (c == null)
        {
            if (_ring.TryEnqueue((nint)d))
            {
                Interlocked.Increment(ref _shared.Ring);
                // Volatile: a Dispose that drained the ring before this page went in would have missed it.
                if (Volatile.Read(ref _state) != StateAlive)
                    DrainAfterDisposeQuietly();
            }
            else
            {
                Interlocked.Increment(ref _shared.RingFull);
                ReturnPage(d);
            }
            return;
        }
        Exception? failed = null;
        try
        {
            int count = c.Count;
            c.Items[count] = (nint)d;
            c.Count = count + 1;
            c.Stats.Ring++;
            if (count + 1 == PerCpuCache.Capacity)
            {
                failed = FlushPerCpuCatching(c);
                LetGoIfMigrated(s, c);
            }
        }
        finally
        {
            ExitPerCpu(s);
        }
        AfterSection(failed);
    }

    /// <summary>
    /// After a per-CPU section: a Dispose that drained the caches before the section put pages into one would have
    /// missed them, so they are drained now; then a failure of the section's flush (a DMA mapper's unmap that
    /// threw while releasing a page the ring refused) is rethrown.
    /// </summary>
    private void AfterSection(Exception? failed)
    {
        // Volatile: Dispose sets the state on another thread.
        if (Volatile.Read(ref _state) != StateAlive)
            DrainAfterDisposeQuietly();
        RethrowIfAny(failed);
    }

    /// <summary>
    /// <see cref="FlushPerCpu"/> inside a section, returning what a release threw instead of throwing it: the
    /// section still closes, the rest of a bulk put still goes in, and the pages stay consistent (the flush fixes
    /// the cache before releasing anything).
    /// </summary>
    private Exception? FlushPerCpuCatching(PerCpuCache c)
    {
        try
        {
            FlushPerCpu(c);
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    /// <summary>Recycles a batch through one per-CPU cache: one CAS for the cache, one per ring batch.</summary>
    private void RecycleInRingBulk(ReadOnlySpan<nint> pages)
    {
        if (!pages.IsEmpty)
            RecycleInRingBulk(PutterState.Current, pages);
    }

    /// <summary>As <see cref="RecycleInRingBulk(ReadOnlySpan{nint})"/>, for a thread whose state <paramref name="s"/> the caller looked up.</summary>
    private void RecycleInRingBulk(PutterState s, ReadOnlySpan<nint> pages)
    {
        PerCpuCache? c = EnterPerCpu(s);
        if (c == null)
        {
            int enq = _ring.EnqueueBurst(pages);
            Interlocked.Add(ref _shared.Ring, enq);
            try
            {
                if (enq < pages.Length)
                {
                    Interlocked.Add(ref _shared.RingFull, pages.Length - enq);
                    ReturnPages(pages[enq..]);
                }
            }
            finally
            {
                if (enq > 0 && Volatile.Read(ref _state) != StateAlive) // Volatile: as in RecycleInRing
                    DrainAfterDisposeQuietly();
            }
            return;
        }
        Exception? failed = null;
        try
        {
            failed = AppendFlushingToRing(c.Items, ref c.Count, ref c.Stats, pages, out bool flushed);
            if (flushed)
                LetGoIfMigrated(s, c);
        }
        finally
        {
            ExitPerCpu(s);
        }
        AfterSection(failed);
    }

    /// <summary>Owner of <paramref name="c"/> only: moves the oldest half of the cache to the ring in one batch.</summary>
    private void FlushPerCpu(PerCpuCache c) => FlushToRing(c.Items, ref c.Count, ref c.Stats);

    /// <summary>
    /// Owner of <paramref name="items"/> only: moves the oldest half to the ring in one batch; pages the ring
    /// cannot take are released (ring_full, and no longer counted as ring). Updates <paramref name="count"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit] // the stack buffer is written before it is read
    private void FlushToRing(Span<nint> items, ref int count, ref PoolCounters stats)
    {
        int n = PerCpuCache.Batch;
        int enq = _ring.EnqueueBurst(items[..n]);
        int rejected = n - enq;
        Span<nint> refused = stackalloc nint[PerCpuCache.Batch];
        items.Slice(enq, rejected).CopyTo(refused);
        // The items and the count are right before any page is released: a release that throws (a DMA mapper's
        // unmap) leaves no page both in the ring and in the cache.
        items[n..count].CopyTo(items);
        count -= n;
        if (rejected == 0)
            return;
        stats.RingFull += rejected;
        stats.Ring -= rejected;
        var log = PagePoolEventSource.Log;
        if (log.IsEnabled(EventLevel.Informational, PagePoolEventSource.Keywords.Ring))
            log.RingFull(Id, rejected);
        ReturnPages(refused[..rejected]);
    }

    /// <summary>
    /// Releases every page of <paramref name="pages"/>, even when one release throws (the first exception is
    /// rethrown at the end): a page whose release failed stays in flight, the others are not lost with it.
    /// </summary>
    private void ReturnPages(ReadOnlySpan<nint> pages)
    {
        Exception? first = null;
        ReleaseEach(pages, ref first);
        RethrowIfAny(first);
    }

    /// <summary>
    /// Empties a cache (<paramref name="items"/> up to <paramref name="count"/>) and releases its pages, keeping the
    /// first exception in <paramref name="first"/>. The count goes to 0 first, so a page whose release throws is in
    /// flight, not still in the cache; the pages are copied out first, so a callback that runs during a release (an
    /// unmap that calls Trim or recycles) cannot change what is being released.
    /// </summary>
    private void ReleaseCache(Span<nint> items, ref int count, ref Exception? first)
    {
        Span<nint> pages = stackalloc nint[AllocCacheSize];
        pages = pages[..count];
        items[..pages.Length].CopyTo(pages);
        count = 0;
        ReleaseEach(pages, ref first);
    }

    /// <summary><see cref="ReleaseCache"/> for the consumer's alloc cache.</summary>
    private void ReleaseAllocCache(ref Exception? first)
    {
        Span<nint> pages = stackalloc nint[AllocCacheSize];
        pages = pages[..CacheCount];
        Cache[..pages.Length].CopyTo(pages);
        CacheCount = 0;
        ReleaseEach(pages, ref first);
    }

    /// <summary>Rethrows, with its original stack, the first exception a batch kept while it went on; nothing when none.</summary>
    private static void RethrowIfAny(Exception? first)
    {
        if (first != null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
    }

    /// <summary>
    /// Releases every page of <paramref name="pages"/> and returns how many were released; the first exception a
    /// release threw is left in <paramref name="first"/> (unless it already holds one) and that page stays in flight.
    /// </summary>
    private int ReleaseEach(ReadOnlySpan<nint> pages, ref Exception? first)
    {
        int released = 0;
        foreach (nint p in pages)
        {
            if (!ClaimForRelease((NetMem*)p))
                continue;
            try
            {
                ReturnPage((NetMem*)p);
                released++;
            }
            catch (Exception e)
            {
                // The page stays in flight, unreferenced, as it was before the claim.
                ((NetMem*)p)->PpRefCount = 0;
                first ??= e;
            }
        }
        return released;
    }

    /// <summary>
    /// Before a page taken off a cache or the ring is released: true when it is this pool's page in the pool (count
    /// 0), which this call now holds (count 1, until <see cref="ReturnPage"/> clears it). False for a second entry of
    /// a page put twice (see <see cref="ClaimForHandOut"/>) that is in use or already released: it is skipped, so a
    /// page is never given back to its provider twice.
    /// </summary>
    private bool ClaimForRelease(NetMem* d)
    {
        if ((d->PpMagic & NetMemRef.PpMagicMask) != NetMemRef.PpSignature || d->Pp != _pp)
            return false;
        // Interlocked: the two entries may be released by two threads at once (Dispose emptying the alloc cache on
        // the consumer, a drain of the ring on another thread); exactly one takes the count from 0.
        if (Interlocked.CompareExchange(ref d->PpRefCount, 1, 0) != 0)
            return false;
        if ((d->PpMagic & NetMemRef.PpMagicMask) == NetMemRef.PpSignature && d->Pp == _pp)
            return true;
        // The other entry's release finished between the check and the claim (ReturnPage clears pp_magic before it
        // clears the count): the page is the provider's; leave its count as it was.
        d->PpRefCount = 0;
        return false;
    }

    /// <summary>
    /// The kernel's <c>page_pool_return_page</c>: unmaps the page, clears its pool fields, counts the release and
    /// drops the pool's page reference (the page goes back to the provider unless someone else holds one).
    /// </summary>
    internal void ReturnPage(NetMem* d)
    {
        var page = new NetMemRef(d);
        if (_debug)
            DebugOnRelease(d);
        if (_dmaMap)
            UnmapTracked(d);
        d->PpMagic = 0;
        d->Pp = 0;
        d->DmaAddr = 0;
        d->PpRefCount = 0;
        var log = PagePoolEventSource.Log;
        bool trace = log.IsEnabled(EventLevel.Verbose, PagePoolEventSource.Keywords.PageState);
        ulong address = trace ? (ulong)page.Address : 0;
        int index = trace ? page.Index : 0;
        if (_provider.Release(page))
            page.PutPage();
        // Counted once the page is back with its provider, and the descriptor is not read after: the count may
        // bring InFlight to 0, and another thread may then free the pool and its provider's regions.
        // Interlocked: releases happen on any thread (ring full, late puts, shared pages, destroy).
        long release = Interlocked.Increment(ref _release);
        if (trace)
            log.StateRelease(Id, address, release, index);
        // Volatile: see CanRecycle; the last page back after Dispose frees the pool.
        if (Volatile.Read(ref _state) == StateDestroying)
            TryFreeAfterRelease();
    }

    // =====================================================================================================
    // Statistics
    // =====================================================================================================

    /// <summary>The kernel's <c>page_pool_get_stats</c>: every counter summed over the caches.</summary>
    public PagePoolStats GetStats()
    {
        PoolCounters sum = default;
        // Plain reads of counters other threads increment: 64-bit reads are never torn, and a slightly stale
        // sum is what the kernel's per-CPU statistics give too.
        (long fastRecycled, long fastAllocated) = FastCounts();
        _hot.Stats.AddTo(ref sum);
        _shared.AddTo(ref sum);
        sum.Cached += fastRecycled;
        sum.Fast += MonotonicFastAllocs(fastAllocated);
        // The fragment pages being cut belong to the pool too (their pieces may be out with users).
        long pooled = CacheCount + _hot.PutCount + _ring.Count + FragPagesHeld;
        foreach (PerCpuCache c in _perCpu)
        {
            c.Stats.AddTo(ref sum);
            pooled += c.Count;
        }
        return new PagePoolStats
        {
            AllocFast = sum.Fast,
            AllocSlow = sum.Slow,
            AllocSlowHighOrder = sum.SlowHighOrder,
            AllocEmpty = sum.Empty,
            AllocRefill = sum.Refill,
            AllocWaive = sum.Waive,
            RecycleCached = sum.Cached,
            RecycleCacheFull = sum.CacheFull,
            RecycleRing = sum.Ring,
            RecycleRingFull = sum.RingFull,
            RecycleReleasedRefcnt = sum.ReleasedRefcnt,
            Hold = sum.Hold,
            Release = Volatile.Read(ref _release),
            Pooled = IsFreed ? 0 : pooled,
            AllocFailed = Volatile.Read(ref _allocFailed),
            AllocOverLimit = Volatile.Read(ref _allocOverLimit),
            Trimmed = Volatile.Read(ref _trimmed),
            BufferSize = BufferSize,
            Interface = Options.Interface,
            QueueIndex = Options.QueueIndex,
            DetachTime = DetachTime,
            MemoryProvider = _provider.Kind,
        };
    }

    private long TotalHold()
    {
        long hold = _hot.Stats.Hold + _shared.Hold;
        foreach (PerCpuCache c in _perCpu)
            hold += c.Stats.Hold;
        return hold;
    }

    /// <summary>Pages taken from the provider and not given back (<c>Hold - Release</c>).</summary>
    public long InFlight => TotalHold() - Volatile.Read(ref _release);

    // =====================================================================================================
    // NUMA
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_update_nid</c>: pages are allocated on <paramref name="nid"/> from now on. The
    /// alloc cache is released and the per-CPU caches are drained into the ring, where refill releases pages of
    /// the old node (waive). Consumer thread only, as the kernel calls it from NAPI context.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nid"/> is below -1 or above 63.</exception>
    /// <exception cref="InvalidOperationException">Called from a thread other than the consumer.</exception>
    /// <remarks>
    /// This waits for other threads' per-CPU sections, which may be running the pool's init callback, DMA mapper or
    /// an event listener: do not call it while holding a lock that any of those take.
    /// </remarks>
    public void UpdateNid(int nid)
    {
        if (nid is < -1 or > 63)
            throw new ArgumentOutOfRangeException(nameof(nid), nid, "A NUMA node is -1 or 0..63.");
        ThrowIfDisposed();
        if (!OnConsumerThread())
            PoolThrowHelper.ThrowNotConsumer(Id, "UpdateNid");
        var log = PagePoolEventSource.Log;
        if (log.IsEnabled(EventLevel.Informational, PagePoolEventSource.Keywords.Lifecycle))
            log.UpdateNid(Id, _nid, nid);
        // Volatile: other threads' refills read the node.
        Volatile.Write(ref _nid, nid);
        // Each step runs even when a release in an earlier one throws (a DMA mapper's unmap): that page stays in
        // flight, every other page is released or in the ring, and the first exception is rethrown at the end.
        Exception? failed = null;
        ReleaseAllocCache(ref failed);
        try
        {
            SpillToRing(_putBuffer, ref _hot.PutCount);
        }
        catch (Exception e)
        {
            failed ??= e;
        }
        try
        {
            EmptyPerCpuCaches(this, onlyNonEmpty: false, static (c, pool) => pool.SpillToRing(c.Items, ref c.Count));
        }
        catch (Exception e)
        {
            failed ??= e;
        }
        RethrowIfAny(failed);
    }

    /// <summary>
    /// Owner of <paramref name="items"/> only: moves all <paramref name="count"/> pages to the ring and releases
    /// those it refuses. The count is 0 before any page is released: a release that throws (a DMA mapper's unmap)
    /// leaves no page both in the ring and in <paramref name="items"/>, where it would be handed out twice.
    /// </summary>
    [SkipLocalsInit] // the stack buffer is written before it is read
    private void SpillToRing(Span<nint> items, ref int count)
    {
        int n = count;
        Debug.Assert(n <= PerCpuCache.Capacity);
        int enq = _ring.EnqueueBurst(items[..n]);
        Span<nint> refused = stackalloc nint[PerCpuCache.Capacity];
        refused = refused[..(n - enq)];
        items.Slice(enq, n - enq).CopyTo(refused);
        count = 0;
        ReturnPages(refused);
    }

    // =====================================================================================================
    // Destroy
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_destroy</c>: no allocation afterwards; the caches and the ring are emptied. When
    /// pages are still in flight the pool stays alive until the last one comes back (it is released, never
    /// recycled), retrying every second and warning "stalled pool shutdown" every 60 s. Call it from the
    /// consumer thread, or when the consumer no longer runs.
    /// </summary>
    /// <remarks>
    /// A release that throws (a DMA mapper's unmap) is rethrown after the shutdown has run to the end; the page
    /// stays in flight. This waits for other threads' per-CPU sections, which may be running the pool's init
    /// callback, DMA mapper or an event listener: do not call it while holding a lock that any of those take. The
    /// converse holds too: a thread that allocates or puts while Dispose may be running can wait for Dispose's
    /// drain, so it must not hold a lock that Dispose's callbacks (the DMA mapper's unmap) take.
    /// </remarks>
    public void Dispose()
    {
        // Interlocked: Dispose may race with itself from several threads; one proceeds.
        if (Interlocked.CompareExchange(ref _state, StateDestroying, StateAlive) != StateAlive)
            return;
        // The consumer's fast paths must see the pool closed and take their checked slow twins (the consumer is
        // quiescent while Dispose empties its cache, as the kernel's NAPI is disabled before page_pool_destroy).
        BlockCacheFastPaths();
        // Volatile: other put paths test the limit.
        Volatile.Write(ref _recycleLimit, 0);
        // Every thread executes a full barrier: a putter that filled a per-CPU cache before this point has its count
        // seen by the drains below; one after it sees the pool destroying and drains its own cache after its section.
        Interlocked.MemoryBarrierProcessWide();
        Interlocked.Exchange(ref _destroyStartedTicks, Stopwatch.GetTimestamp());
        _lastStallWarningTicks = Stopwatch.GetTimestamp();
        // A release that throws (a DMA mapper's unmap) does not stop the shutdown: that page stays in flight, every
        // other step still runs and the retry timer starts; the first exception is rethrown at the end.
        Exception? failed = null;
        try
        {
            OnDestroying();
            FreeFrags();
        }
        catch (Exception e)
        {
            failed = e;
        }
        ReleaseAllocCache(ref failed);
        ReleaseCache(_putBuffer, ref _hot.PutCount, ref failed);
        try
        {
            ReleaseAttempt();
        }
        catch (Exception e)
        {
            failed ??= e;
        }
        // Pages still out keep no mapping to memory the pool no longer controls (page_pool_scrub since 6.15).
        if (!IsFreed)
        {
            MarkDetached();
            UnmapAllTracked(ref failed);
        }
        if (!IsFreed)
        {
            var timer = new Timer(static s => ((PagePool)s!).ReleaseRetry(), this, Timeout.Infinite, Timeout.Infinite);
            // Interlocked (a full fence before the state read below): a thread that frees the pool after this
            // store takes the timer and disposes of it; one that freed it before, this thread sees below.
            Interlocked.Exchange(ref _retryTimer, timer);
            timer.Change(ReleaseRetryInterval, ReleaseRetryInterval);
            // The last page may have come back between ReleaseAttempt and the timer's creation.
            TryFreeAfterRelease();
            if (IsFreed)
                Interlocked.Exchange(ref _retryTimer, null)?.Dispose();
        }
        RethrowIfAny(failed);
    }

    /// <summary>The kernel's <c>page_pool_release</c>: empties ring and per-CPU caches; frees the pool when nothing is in flight.</summary>
    private void ReleaseAttempt()
    {
        // Until one drain has revoked every held per-CPU cache, empty or not, the pool is not freed: that drain
        // waits for any allocation inside a section, which may be taking pages from the provider into an empty
        // cache, and it is what makes every such page's Hold visible to whoever decides that none is in flight.
        // A provider take being set up (see BeginTake; its init callback may be the caller of this Dispose) holds
        // the flag back too; the last such take to finish sets it (else the retry timer does).
        if (!TryCompleteDrain())
            DrainAfterDispose();
        long destroyCount = Interlocked.Increment(ref _destroyCount);
        var log = PagePoolEventSource.Log;
        if (log.IsEnabled(EventLevel.Informational, PagePoolEventSource.Keywords.Lifecycle))
        {
            long hold = TotalHold();
            long release = Volatile.Read(ref _release);
            log.Release(Id, hold - release, hold, release, destroyCount);
        }
        TryFreeAfterRelease();
    }

    /// <summary>
    /// Until it has happened once, a drain that revokes every per-CPU cache with no provider take being set up (see
    /// <see cref="BeginTake"/>); the pool is not freed before (see <see cref="ReleaseAttempt"/>).
    /// </summary>
    /// <returns>Whether no such drain is needed any more (false: a plain drain, if any, is the caller's to do).</returns>
    private bool TryCompleteDrain()
    {
        // Volatile: written below by whichever thread (Dispose, the retry timer, the last take to end) completes it.
        if (Volatile.Read(ref _drainedAll) != 0)
            return false;
        // Volatile: decremented (a full fence after its Holds) by the allocating thread (EndTake).
        if (DrainAfterDispose(revokeAll: true) && Volatile.Read(ref _takesUnderWay) == 0)
        {
            // Interlocked (a full fence): releases on other threads either see the flag and free the pool
            // themselves, or their release count is seen by the caller's TryFreeAfterRelease.
            Interlocked.Exchange(ref _drainedAll, 1);
        }
        return true;
    }

    /// <summary>
    /// The last provider take being set up that a Dispose saw under way has finished: complete the drain that
    /// Dispose could not, and free the pool if nothing is in flight. A release that throws is kept for the stall
    /// warning (the caller is an allocation, which must not fail for it); the retry timer tries again.
    /// </summary>
    private void CompleteDrainQuietly()
    {
        try
        {
            TryCompleteDrain();
            TryFreeAfterRelease();
        }
        catch (Exception e)
        {
            // Volatile: read by the retry timer's thread.
            Volatile.Write(ref _lastReleaseError, e);
        }
    }

    /// <summary>
    /// After a put or an allocation that went through a cache or the ring while the pool was being disposed: a
    /// Dispose that drained before it would have missed what it left there. A release that throws here must not
    /// turn the caller's success into a failure (a caller that retried would put twice): the exception is kept
    /// for the stall warning, and the retry timer drains again.
    /// </summary>
    private void DrainAfterDisposeQuietly()
    {
        try
        {
            DrainAfterDispose();
        }
        catch (Exception e)
        {
            // Volatile: read by the retry timer's thread.
            Volatile.Write(ref _lastReleaseError, e);
        }
    }

    /// <summary>
    /// After Dispose: releases the ring's pages and those of the per-CPU caches (all held caches when
    /// <paramref name="revokeAll"/>, else only those that hold pages).
    /// </summary>
    /// <returns>Whether every per-CPU cache was visited (false when the drain had to leave a held one alone).</returns>
    [SkipLocalsInit] // the stack buffer is written before it is read
    private bool DrainAfterDispose(bool revokeAll = false)
    {
        Span<nint> batch = stackalloc nint[AllocCacheRefill];
        int n;
        // Every page is released even when some releases throw: those pages stay in flight, the rest do not, and
        // the first exception is rethrown once the ring and every cache are empty.
        Exception? failed = null;
        while ((n = _ring.DequeueBurst(batch)) > 0)
            ReleaseEach(batch[..n], ref failed);
        bool complete = false;
        try
        {
            complete = EmptyPerCpuCaches(this, onlyNonEmpty: !revokeAll, static (c, pool) =>
            {
                Exception? first = null;
                pool.ReleaseCache(c.Items, ref c.Count, ref first);
                RethrowIfAny(first);
            });
        }
        catch (Exception e)
        {
            failed ??= e;
        }
        RethrowIfAny(failed);
        return complete;
    }

    private void ReleaseRetry()
    {
        if (IsFreed)
            return;
        try
        {
            ReleaseAttempt();
        }
        catch (Exception e)
        {
            // A release that threw on this timer thread (a DMA mapper's unmap) must not take the process down: the
            // page stays in flight, the next attempt tries the rest, and the stall warning carries the exception.
            // Volatile: also written by putters that drain after Dispose.
            Volatile.Write(ref _lastReleaseError, e);
        }
        if (IsFreed)
            return;
        long now = Stopwatch.GetTimestamp();
        if (Stopwatch.GetElapsedTime(Volatile.Read(ref _lastStallWarningTicks), now) >= StalledWarningInterval)
        {
            Volatile.Write(ref _lastStallWarningTicks, now);
            long seconds = (long)Stopwatch.GetElapsedTime(Volatile.Read(ref _destroyStartedTicks), now).TotalSeconds;
            long inflight = InFlight;
            StalledShutdownRaised?.Invoke(this, new StalledShutdownEventArgs(Id, inflight, seconds, Volatile.Read(ref _lastReleaseError)));
            var log = PagePoolEventSource.Log;
            if (log.IsEnabled(EventLevel.Warning, PagePoolEventSource.Keywords.Lifecycle))
                log.StalledShutdown(Id, inflight, seconds, DescribeLeaks());
        }
    }

    private Exception? _lastReleaseError; // the last release after Dispose that threw: Volatile, any thread

    /// <summary>Raised (on a timer thread) with each "stalled pool shutdown" warning.</summary>
    public event EventHandler<StalledShutdownEventArgs>? StalledShutdownRaised;

    private void TryFreeAfterRelease()
    {
        // Volatile: see ReleaseAttempt; before the first complete drain, a Hold may still be on its way.
        if (Volatile.Read(ref _drainedAll) == 0)
            return;
        // Hold no longer moves once that drain is done (no allocation), so InFlight only falls.
        if (InFlight != 0)
            return;
        // Interlocked: the last releasing thread and the retry timer may both get here; one frees.
        if (Interlocked.CompareExchange(ref _state, StateFreed, StateDestroying) != StateDestroying)
            return;
        // Interlocked: Dispose may be storing the timer right now; whichever of the two takes it disposes of it.
        Interlocked.Exchange(ref _retryTimer, null)?.Dispose();
        s_pools.TryRemove(Id, out _);
        OnFreed();
        var log = PagePoolEventSource.Log;
        if (log.IsEnabled(EventLevel.Informational, PagePoolEventSource.Keywords.Lifecycle))
            log.PoolDestroyed(Id, TotalHold(), Volatile.Read(ref _release));
        _provider.Destroy(Binding);
        if (_ownsProvider)
            ((PageProvider)_provider).Dispose();
        if (_ppHandle.IsAllocated)
            _ppHandle.Free();
    }

    private void ThrowIfDisposed()
    {
        // Volatile: Dispose may have run on another thread.
        if (Volatile.Read(ref _state) != StateAlive)
            PoolThrowHelper.ThrowDisposed(Id);
    }

    /// <inheritdoc />
    public override string ToString() => $"PagePool {Id} '{Name}' order {_order}";

    private static void Validate(PagePoolOptions o)
    {
        if ((o.Flags & ~PagePoolFlags.All) != 0)
            throw new ArgumentException($"Unknown flag bits 0x{(int)(o.Flags & ~PagePoolFlags.All):x}.", nameof(PagePoolOptions.Flags));
        if (o.Order is < 0 or > PageConstants.MaxOrder)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.Order), o.Order, $"Order must be 0..{PageConstants.MaxOrder}.");
        if (o.MemoryProvider != null && o.Provider != null)
            throw new ArgumentException("Set either Provider or MemoryProvider, not both.", nameof(PagePoolOptions.MemoryProvider));
        if (o.PoolSize < 1)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.PoolSize), o.PoolSize, "The ring needs at least one slot.");
        if (o.NumaNode is < -1 or > 63)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.NumaNode), o.NumaNode, "A NUMA node is -1 or 0..63.");
        if (!Enum.IsDefined(o.DmaDirection))
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.DmaDirection), o.DmaDirection, "Unknown DMA direction.");
        if ((o.Flags & PagePoolFlags.DmaMap) != 0 && o.DmaDirection is not (DmaDirection.FromDevice or DmaDirection.Bidirectional))
            throw new ArgumentException("DmaMap needs DmaDirection FromDevice or Bidirectional (a pool's pages are written by the device).", nameof(PagePoolOptions.DmaDirection));
        if ((o.Flags & PagePoolFlags.DmaSyncDev) != 0)
        {
            if ((o.Flags & PagePoolFlags.DmaMap) == 0)
                throw new ArgumentException("DmaSyncDev needs DmaMap: only mapped pages can be synced.", nameof(PagePoolOptions.Flags));
            if (o.MaxLen <= 0)
                throw new ArgumentException("DmaSyncDev needs MaxLen > 0.", nameof(PagePoolOptions.MaxLen));
        }
        int size = PageConstants.PageSize << Math.Clamp(o.Order, 0, PageConstants.MaxOrder);
        if (o.MaxLen < 0 || o.MaxLen > size)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.MaxLen), o.MaxLen, $"MaxLen must be 0..{size}.");
        if (o.Offset < 0 || o.Offset >= size || (long)o.Offset + o.MaxLen > size)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.Offset), o.Offset, $"Offset + MaxLen must fit in the {size}-byte buffer.");
        ValidateIdentity(o);
    }

    // ---- hooks implemented by the debug/hardening part of the pool ----
    partial void OnCreated();
    partial void OnDestroying();
    partial void OnFreed();
    private partial void DebugOnAlloc(NetMem* d);
    private partial void DebugOnPut(NetMem* d);
    private partial void DebugOnHold(NetMem* d);
    private partial void DebugOnRelease(NetMem* d);
    private partial string DescribeLeaks();
}

/// <summary>Arguments of <see cref="PagePool.StalledShutdownRaised"/>.</summary>
public sealed class StalledShutdownEventArgs(long poolId, long inFlight, long seconds, Exception? releaseError = null) : EventArgs
{
    /// <summary>The pool's id.</summary>
    public long PoolId { get; } = poolId;

    /// <summary>Pages still in flight.</summary>
    public long InFlight { get; } = inFlight;

    /// <summary>Seconds since <see cref="PagePool.Dispose"/>.</summary>
    public long Seconds { get; } = seconds;

    /// <summary>
    /// The last exception a release attempt of the shutdown threw (a DMA mapper's unmap, for instance), or null:
    /// the page whose release threw stays in flight, which may be why the shutdown stalls.
    /// </summary>
    public Exception? ReleaseError { get; } = releaseError;
}
