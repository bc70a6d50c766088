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

// The verbs, as every file of the pool uses them:
//   alloc    hand a page out to a user with pp_ref_count 1 (alloc cache, per-CPU cache, ring, provider, in order).
//   put      a user drops a reference (page_pool_put_page); the last one recycles the page or releases it.
//   recycle  keep a page whose last reference was dropped: into the alloc cache (direct, consumer thread only),
//            a per-CPU cache, or the ring.
//   return   the kernel's page_pool_return_page: unmap, clear pp_magic/pp, count in Release, and give the page
//            back to its provider.
//   release  a page leaves the pool for good instead of being recycled (ReleasePage, a page that cannot be
//            recycled, a full ring, a pool being destroyed); done by a return.
//   drain    empty caches and the ring after Dispose (or for a node change): revoke every per-CPU cache and release.
//   trim     give pooled pages back to the provider down to the low-water mark, on demand, when idle or at the
//            memory limit; the pool stays alive.
//   waive    release a page of another NUMA node met while refilling (page_pool_refill_alloc_cache's waive).
//
// Owners: the front (this file) holds the shared fields, the constructor and the public dispatch; the consumer's
// alloc cache (PagePool.AllocCache.cs, PagePool.Alloc.cs), the provider slow path (PagePool.Refill.cs), the
// per-CPU cache set (Internal/PerCpuCacheSet.cs, Internal/PerCpuCache.cs, PagePool.PerCpu.cs), puts
// (PagePool.Put.cs), recycle and release (PagePool.Release.cs), the lifecycle alive -> destroying -> drained -> freed
// (PagePool.Lifecycle.cs), fragments (PagePool.Frag.cs), the trimmer (PagePool.Shrink.cs), and debug checks
// (PagePool.Debug.cs) each own their part.

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

    /// <summary>
    /// Entries of the consumer's put buffer (its per-CPU cache): twice <see cref="AllocCacheRefill"/>, so that a
    /// flush moves the oldest half, one refill's worth, to the ring in one batch.
    /// </summary>
    internal const int PutBufferSize = 2 * AllocCacheRefill;

    /// <summary>Interval between release retries after <see cref="Dispose"/> with pages in flight (the kernel's HZ).</summary>
    internal static TimeSpan ReleaseRetryInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Interval between "stalled pool shutdown" warnings (the kernel's 60 s).</summary>
    internal static TimeSpan StalledWarningInterval { get; set; } = TimeSpan.FromSeconds(60);


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
    private readonly nint[] _putBuffer = GC.AllocateArray<nint>(PutBufferSize, pinned: true);
    private readonly nint* _putBufferData;
    // The put buffer's fast path, other threads' per-CPU put fast path and the fragment recycle run only while this
    // is nonzero: 0 in debug mode, with DMA sync and after Dispose. The alloc cache's fast paths are blocked in the
    // cache word instead (CacheWord).
    private int _recycleLimit;
    // ---- shared state ----
    private int _consumerThreadId;
    private int _nid;
    private readonly nint _pp;          // this pool's identity in NetMem.Pp: a GCHandle to the pool
    // What an ordinary page of this pool holds in its adjacent pp_magic and pp words, compared in one load.
    private readonly Vector128<ulong> _ppIdentity;
    private GCHandle _ppHandle;
    private readonly PtrRing _ring;
    private readonly PerCpuCacheSet _perCpu;         // the per-CPU caches and their drain (PagePool.PerCpu.cs)
    private PoolCounters _shared;       // rare counters from any thread: Interlocked only
    private long _release;              // pages_state_release_cnt: Interlocked, any thread releases
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
        options.Validate();

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
        _perCpu = new PerCpuCacheSet(this, cpus);

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
    public bool IsDisposed => !IsAlive;

    /// <summary>Whether the pool has released its last page and freed its resources after <see cref="Dispose"/>.</summary>
    public bool IsFreed => State == StateFreed;

    /// <summary>Whether debug checks are on for this pool.</summary>
    public bool DebugMode => _debug;

    /// <summary>The opaque value this pool writes into <see cref="NetMem.Pp"/>.</summary>
    public nint PpHandle => _pp;

    /// <summary>Live pools in the process (created and not yet freed), for statistics and tools.</summary>
    internal static ICollection<PagePool> LivePools => s_pools.Values;

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
        foreach (PerCpuCache c in _perCpu.Caches)
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
        foreach (PerCpuCache c in _perCpu.Caches)
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
        FirstException failed = default;
        ReleaseAllocCache(ref failed);
        try
        {
            SpillToRing(_putBuffer, ref _hot.PutCount);
        }
        catch (Exception e)
        {
            failed.Keep(e);
        }
        try
        {
            EmptyPerCpuCaches(this, onlyNonEmpty: false, static (c, pool) => pool.SpillToRing(c.Items, ref c.Count));
        }
        catch (Exception e)
        {
            failed.Keep(e);
        }
        failed.ThrowIfAny();
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
        Debug.Assert(n <= PutBufferSize);
        int enq = _ring.EnqueueBurst(items[..n]);
        Span<nint> refused = stackalloc nint[PutBufferSize];
        refused = refused[..(n - enq)];
        items.Slice(enq, n - enq).CopyTo(refused);
        count = 0;
        ReturnPages(refused);
    }

    /// <inheritdoc />
    public override string ToString() => $"PagePool {Id} '{Name}' order {_order}";

    // ---- hooks implemented by the debug/hardening part of the pool ----
    partial void OnCreated();
    partial void OnFreed();
    private partial void DebugOnAlloc(NetMem* d);
    private partial void DebugOnPut(NetMem* d);
    private partial void DebugOnHold(NetMem* d);
    private partial void DebugOnRelease(NetMem* d);
    private partial string DescribeLeaks();
}
