using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using HdrHistogram;
using UnmanagedPool.Native;

namespace UnmanagedPool.Stress;

/// <summary>A page a worker holds: the page, the cookie it wrote, and the pool it came from.</summary>
public struct HeldPage
{
    public NetMemRef Page;
    public ulong Cookie;
    public IStressPool Pool;
    /// <summary>Index of the worker whose main pool this is, or -1 for a pool created by a dispose operation.</summary>
    public int PoolIndex;
    /// <summary>For deferred returns: the worker's operation count at which the page goes back.</summary>
    public long Due;
    /// <summary>For a fragment: its offset in the page.</summary>
    public int FragOffset;
    /// <summary>For a fragment: its size; 0 for a whole page.</summary>
    public int FragSize;
}

/// <summary>Which latency a histogram holds.</summary>
public enum LatencyKind
{
    /// <summary>One page allocated (any path).</summary>
    Alloc,
    /// <summary>One page put (any path).</summary>
    Put,
    /// <summary>AllocPages of 64, per call.</summary>
    BulkAlloc,
    /// <summary>PutPages of 64, per call.</summary>
    BulkPut,
}

/// <summary>
/// One worker thread: the consumer of its own pool. It draws operations from the mix, holds pages with an owner
/// cookie at both ends, and checks the cookie and the ownership bitmap on every return.
/// </summary>
internal sealed unsafe partial class StressWorker
{
    private const int BulkSize = 64;
    private const int InboxLimit = 4096;
    private const int MaxDeferred = 1024;
    private static readonly long DisposeIntervalTicks = Stopwatch.Frequency / 100;   // at most 100 pools/s per worker (arbitrary)

    private readonly StressRun _run;
    private readonly StressOptions _options;
    private readonly int _index;
    private readonly double[] _cumulative;
    private XorShiftRandom _random;
    private ulong _serial;
    private readonly ulong _cookieSeed;

    private readonly HeldPage[] _held;
    private int _heldCount;
    private readonly HeldPage[] _deferred = new HeldPage[MaxDeferred];
    private int _deferredCount;
    private readonly List<IStressPool> _disposing = new();
    private long _lastDisposeTicks;

    public StressWorker(StressRun run, int index)
    {
        _run = run;
        _options = run.Options;
        _index = index;
        _random = new XorShiftRandom(_options.Seed * 0x100000001B3UL + (ulong)index);
        _cookieSeed = XorShiftRandom.SplitMix(_options.Seed ^ ((ulong)(index + 1) << 40));
        _held = new HeldPage[_options.MaxHeld];
        double[] mix = _options.Mix;
        _cumulative = new double[mix.Length];
        double sum = 0;
        for (int i = 0; i < mix.Length; i++)
            _cumulative[i] = sum += mix[i];
        AllocsByPool = new long[_options.Threads];
        PutsByPool = new long[_options.Threads];
        Injector = new RandomFaultInjector(_options.FaultRate, _options.Seed ^ (0xFA17UL << 32) ^ (ulong)index);
        Provider = new PageProvider { FaultInjector = _options.FaultRate > 0 ? Injector : null };
    }

    public PageProvider Provider { get; }
    public RandomFaultInjector Injector { get; }
    public IStressPool Pool { get; private set; } = null!;
    public ConcurrentQueue<HeldPage> Inbox { get; } = new();
    public long[] AllocsByPool { get; }
    public long[] PutsByPool { get; }
    public long Ops;                 // written by this worker, read by the progress line
    public readonly long[] OpCounts = new long[Enum.GetValues<StressOp>().Length];
    public long PageOps;
    public long AllocFailures;
    public long PoolsCreated;
    public long PoolsFreed;
    public long PagesInFlightAtDispose;
    /// <summary>Set by the fragment operations: fragment pages break the per-page counter equations.</summary>
    public bool UsedFragments { get; private set; }
    public readonly LongHistogram[] Latency = [Stress.Latency.NewHistogram(), Stress.Latency.NewHistogram(), Stress.Latency.NewHistogram(), Stress.Latency.NewHistogram()];
    public IReadOnlyList<IStressPool> DisposingPools => _disposing;

    public void CreatePool() => Pool = _run.PoolFactory(new StressPoolContext(Provider, _options.Order, $"stress-{_index}"));

    // =================================================================================================
    // Main loop
    // =================================================================================================

    public void Run()
    {
        while (!_run.StopRequested)
        {
            try
            {
                DrainInbox(16);
                StressOp op = Draw();
                switch (op)
                {
                    case StressOp.Alloc: DoAlloc(forceOther: false); break;
                    case StressOp.Put: DoPut(); break;
                    case StressOp.Direct: DoDirect(); break;
                    case StressOp.Bulk: DoBulk(); break;
                    case StressOp.Cross: DoCross(); break;
                    case StressOp.Dispose: DoDispose(); break;
                    case StressOp.Frag: DoFrag(); break;
                    case StressOp.Packet: DoPacket(); break;
                    case StressOp.Split: DoSplit(); break;
#if HAS_FRAGMENTS
                    case StressOp.MultiBuffer: DoMultiBuffer(); break;
#endif
                }
                OpCounts[(int)op]++;
                // Volatile: the progress line reads it from the main thread.
                Volatile.Write(ref Ops, Ops + 1);
                if ((Ops & 255) == 0)
                    ReturnDueDeferred(all: false);
            }
            catch (Exception e)
            {
                _run.Violations.Report(ViolationNames.PoolException, $"worker {_index}: {e.GetType().Name}: {e.Message}");
                if (!_options.KeepGoing)
                    _run.RequestStop();
            }
        }
    }

    /// <summary>After the loop: gives back every page this worker holds or deferred.</summary>
    public void ReturnAll()
    {
        while (_heldCount > 0)
            SafeGive(_held[--_heldCount], allowDirect: false);
        ReturnDueDeferred(all: true);
#if HAS_FRAGMENTS
        FlushFrameBatch();
#endif
    }

    /// <summary>After every worker stopped sending: puts whatever is left in the inbox.</summary>
    public void DrainInboxFully() => DrainInbox(int.MaxValue);

    /// <summary>Drops the disposed pools that reached IsFreed, checking InFlight 0 on each.</summary>
    public void ReapDisposed()
    {
        for (int i = _disposing.Count - 1; i >= 0; i--)
        {
            IStressPool p = _disposing[i];
            if (!p.IsFreed)
                continue;
            if (p.InFlight != 0)
                _run.Violations.Report(ViolationNames.InFlightNotZero, $"worker {_index}: a pool freed after dispose-in-flight reports InFlight {p.InFlight}");
            _disposing.RemoveAt(i);
            PoolsFreed++;
        }
    }

    private StressOp Draw()
    {
        double x = _random.NextDouble() * _cumulative[^1];
        double[] c = _cumulative;
        for (int i = 0; i < c.Length; i++)
            if (x < c[i])
                return (StressOp)i;
        return StressOp.Alloc;
    }

    // =================================================================================================
    // Holding and returning pages
    // =================================================================================================

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong NextCookie() => XorShiftRandom.SplitMix(_cookieSeed + ++_serial) | 1;

    /// <summary>A page just handed out: mark it held (double hand-out check) and write the owner cookie at both ends.</summary>
    private bool Take(NetMemRef page, IStressPool pool, int poolIndex, out HeldPage held)
    {
        held = default;
        if (!_run.Ownership.TryAcquire(page))
        {
            // Somebody else holds this page: report it and drop our reference, so the real holder's cookie survives.
            _run.Violations.Report(ViolationNames.DoubleHandOut, $"worker {_index}: page 0x{(nint)page.Address:x} handed out while already held");
            if (!_options.KeepGoing)
                _run.RequestStop();
            return false;
        }
        ulong cookie = NextCookie();
        byte* a = page.Address;
        *(ulong*)a = cookie;
        *(ulong*)(a + page.Size - sizeof(ulong)) = ~cookie;
        if (poolIndex >= 0)
            AllocsByPool[poolIndex]++;
        PageOps++;
        held = new HeldPage { Page = page, Cookie = cookie, Pool = pool, PoolIndex = poolIndex };
        return true;
    }

    /// <summary>Checks the cookie and clears the ownership bit before the page goes back (see <see cref="OwnershipMap"/>).</summary>
    private void CheckBeforeReturn(in HeldPage h)
    {
        if (h.FragSize > 0)
        {
            CheckFragmentBeforeReturn(h);
            return;
        }
        byte* a = h.Page.Address;
        ulong head = *(ulong*)a;
        ulong tail = *(ulong*)(a + h.Page.Size - sizeof(ulong));
        if (head != h.Cookie || tail != ~h.Cookie)
        {
            _run.Violations.Report(ViolationNames.CookieMismatch,
                $"worker {_index}: page 0x{(nint)a:x} came back with cookie 0x{head:x16}/0x{~tail:x16}, expected 0x{h.Cookie:x16}");
            if (!_options.KeepGoing)
                _run.RequestStop();
        }
        if (!_run.Ownership.TryRelease(h.Page))
        {
            _run.Violations.Report(ViolationNames.ReturnedNotHeld, $"worker {_index}: page 0x{(nint)a:x} given back but not marked held");
            if (!_options.KeepGoing)
                _run.RequestStop();
        }
        if (h.PoolIndex >= 0)
            PutsByPool[h.PoolIndex]++;
        PageOps++;
    }

    /// <summary>A fragment shares its page with others: only its own cookie is checked, the bitmap is not involved.</summary>
    private void CheckFragmentBeforeReturn(in HeldPage h)
    {
        byte* a = h.Page.Address + h.FragOffset;
        ulong head = *(ulong*)a;
        ulong tail = *(ulong*)(a + h.FragSize - sizeof(ulong));
        if (head != h.Cookie || tail != ~h.Cookie)
        {
            _run.Violations.Report(ViolationNames.CookieMismatch,
                $"worker {_index}: fragment at 0x{(nint)a:x} (+{h.FragOffset}, {h.FragSize} B) came back with cookie 0x{head:x16}/0x{~tail:x16}, expected 0x{h.Cookie:x16}");
            if (!_options.KeepGoing)
                _run.RequestStop();
        }
        PageOps++;
    }

    private void Give(in HeldPage h, bool allowDirect)
    {
        CheckBeforeReturn(h);
        long t0 = Stopwatch.GetTimestamp();
        h.Pool.Put(h.Page, allowDirect);
        Stress.Latency.Record(Latency[(int)LatencyKind.Put], Stopwatch.GetTimestamp() - t0);
    }

    /// <summary>Give for the clean-up phases: an exception is reported, never thrown (the barriers must be reached).</summary>
    private void SafeGive(in HeldPage h, bool allowDirect)
    {
        try
        {
            Give(h, allowDirect);
        }
        catch (Exception e)
        {
            _run.Violations.Report(ViolationNames.PoolException, $"worker {_index}: {e.GetType().Name}: {e.Message}");
        }
    }

    private void Hold(in HeldPage h)
    {
        if (_heldCount < _held.Length)
            _held[_heldCount++] = h;
        else
            Give(h, allowDirect: false);
    }

    private void AllocFailed()
    {
        AllocFailures++;
        if (_options.FaultRate == 0)
        {
            _run.Violations.Report(ViolationNames.UnexpectedAllocFailure, $"worker {_index}: allocation returned null with no fault injected");
            if (!_options.KeepGoing)
                _run.RequestStop();
        }
    }

    /// <summary>
    /// Puts up to <paramref name="limit"/> pages other workers sent: whole pages in runs of the same pool as short
    /// PutPages bursts (up to <see cref="InboxBurst"/>, as a TX completion returns them), fragments one by one.
    /// </summary>
    private void DrainInbox(int limit)
    {
#if HAS_FRAGMENTS
        DrainFrameInbox(limit);
#endif
        ConcurrentQueue<HeldPage> inbox = Inbox;
        Span<NetMemRef> burst = stackalloc NetMemRef[InboxBurst];
        int n = 0;
        IStressPool? burstPool = null;
        for (int i = 0; i < limit && inbox.TryDequeue(out HeldPage h); i++)
        {
            if (h.FragSize > 0)
            {
                SafeGive(h, allowDirect: false);
                continue;
            }
            if (n == InboxBurst || (n > 0 && !ReferenceEquals(h.Pool, burstPool)))
            {
                SafePutBurst(burstPool!, burst[..n]);
                n = 0;
            }
            CheckBeforeReturn(h);
            burstPool = h.Pool;
            burst[n++] = h.Page;
        }
        if (n > 0)
            SafePutBurst(burstPool!, burst[..n]);
    }

    /// <summary>Whole pages from the inbox put back in one PutPages call at most (arbitrary: a short burst).</summary>
    private const int InboxBurst = 8;

    /// <summary>PutPages of pages already checked and released from the ownership bitmap; an exception is reported.</summary>
    private void SafePutBurst(IStressPool pool, ReadOnlySpan<NetMemRef> pages)
    {
        try
        {
            pool.PutBulk(pages);
        }
        catch (Exception e)
        {
            _run.Violations.Report(ViolationNames.PoolException, $"worker {_index}: {e.GetType().Name}: {e.Message}");
        }
    }

    private void ReturnDueDeferred(bool all)
    {
        for (int i = _deferredCount - 1; i >= 0; i--)
        {
            if (!all && _deferred[i].Due > Ops)
                continue;
            HeldPage h = _deferred[i];
            _deferred[i] = _deferred[--_deferredCount];
            SafeGive(h, allowDirect: false);
        }
    }

    private StressWorker? RandomOther()
    {
        StressWorker[] workers = _run.Workers;
        if (workers.Length < 2)
            return null;
        int j = _random.NextInt(workers.Length - 1);
        return workers[j >= _index ? j + 1 : j];
    }

    // =================================================================================================
    // Operations
    // =================================================================================================

    /// <summary>alloc: one page from this worker's pool (consumer path) or, now and then, from another's (shared path).</summary>
    private void DoAlloc(bool forceOther)
    {
        if (_heldCount >= _held.Length)
        {
            DoPut();
            return;
        }
        IStressPool pool = Pool;
        int poolIndex = _index;
        if (forceOther || _random.NextInt(8) == 0)
        {
            StressWorker? other = RandomOther();
            if (other != null)
            {
                pool = other.Pool;
                poolIndex = other._index;
            }
        }
        long t0 = Stopwatch.GetTimestamp();
        NetMemRef page = pool.Alloc();
        Stress.Latency.Record(Latency[(int)LatencyKind.Alloc], Stopwatch.GetTimestamp() - t0);
        if (page.IsNull)
        {
            AllocFailed();
            return;
        }
        if (Take(page, pool, poolIndex, out HeldPage h))
            _held[_heldCount++] = h;
    }

    /// <summary>put: one held page back, direct or through the ring at random.</summary>
    private void DoPut()
    {
        if (_heldCount == 0)
        {
            DoAlloc(forceOther: false);
            return;
        }
        int i = _random.NextInt(_heldCount);
        HeldPage h = _held[i];
        _held[i] = _held[--_heldCount];
        Give(h, allowDirect: (_random.Next() & 1) != 0);
    }

    /// <summary>
    /// One timed allocation on the consumer handle, then <see cref="Take"/> of the page for this worker's main pool.
    /// False when the allocation failed (counted) or the page failed its hand-out checks (a violation recorded).
    /// </summary>
    private bool TryAllocDirectAndTake(IStressPool pool, out HeldPage held)
    {
        long t0 = Stopwatch.GetTimestamp();
        NetMemRef page = pool.AllocDirect();
        Stress.Latency.Record(Latency[(int)LatencyKind.Alloc], Stopwatch.GetTimestamp() - t0);
        if (page.IsNull)
        {
            AllocFailed();
            held = default;
            return false;
        }
        return Take(page, pool, _index, out held);
    }

    /// <summary>direct: the consumer handle's fast path, alloc then recycle_direct.</summary>
    private void DoDirect()
    {
        IStressPool pool = Pool;
        if (!TryAllocDirectAndTake(pool, out HeldPage h))
            return;
        CheckBeforeReturn(h);
        long t0 = Stopwatch.GetTimestamp();
        pool.RecycleDirect(h.Page);
        Stress.Latency.Record(Latency[(int)LatencyKind.Put], Stopwatch.GetTimestamp() - t0);
    }

    /// <summary>bulk: AllocPages of 64, checked, then PutPages of the lot.</summary>
    private void DoBulk()
    {
        IStressPool pool = Pool;
        Span<NetMemRef> pages = stackalloc NetMemRef[BulkSize];
        long t0 = Stopwatch.GetTimestamp();
        int n = pool.AllocBulk(pages);
        Stress.Latency.Record(Latency[(int)LatencyKind.BulkAlloc], Stopwatch.GetTimestamp() - t0);
        if (n < BulkSize)
            AllocFailed();
        int kept = 0;
        for (int i = 0; i < n; i++)
        {
            if (!Take(pages[i], pool, _index, out HeldPage h))
                continue;
            pages[kept++] = pages[i];
            _bulkCookies[kept - 1] = h.Cookie;
        }
        for (int i = 0; i < kept; i++)
            CheckBeforeReturn(new HeldPage { Page = pages[i], Cookie = _bulkCookies[i], Pool = pool, PoolIndex = _index });
        if (kept == 0)
            return;
        t0 = Stopwatch.GetTimestamp();
        pool.PutBulk(pages[..kept]);
        Stress.Latency.Record(Latency[(int)LatencyKind.BulkPut], Stopwatch.GetTimestamp() - t0);
    }

    private readonly ulong[] _bulkCookies = new ulong[BulkSize];

    /// <summary>cross-thread put: hand up to 4 held pages to another worker, which puts them from its thread; or allocate from its pool.</summary>
    private void DoCross()
    {
        StressWorker? other = RandomOther();
        if (other == null)
        {
            DoPut();
            return;
        }
        if (_heldCount == 0 || (_random.Next() & 3) == 0)
        {
            DoAlloc(forceOther: true);
            return;
        }
        if (other.Inbox.Count >= InboxLimit)
        {
            DoPut();
            return;
        }
        int n = Math.Min(_heldCount, 1 + _random.NextInt(4));
        for (int k = 0; k < n; k++)
        {
            int i = _random.NextInt(_heldCount);
            other.Inbox.Enqueue(_held[i]);
            _held[i] = _held[--_heldCount];
        }
    }

    /// <summary>
    /// dispose while in flight: a fresh pool on this thread, pages spread over other workers' inboxes and this
    /// worker's deferred list, the pool disposed, and the pages put back later; the pool must then free itself.
    /// </summary>
    private void DoDispose()
    {
        long now = Stopwatch.GetTimestamp();
        if (now - _lastDisposeTicks < DisposeIntervalTicks || _disposing.Count >= 64)
        {
            DoDirect();
            return;
        }
        _lastDisposeTicks = now;
        ReapDisposed();
        IStressPool pool = _run.PoolFactory(new StressPoolContext(Provider, _options.Order, $"stress-{_index}-dispose-{PoolsCreated}"));
        PoolsCreated++;
        int want = 32 + _random.NextInt(97);
        int inFlight = 0;
        for (int k = 0; k < want; k++)
        {
            NetMemRef page = (k & 1) == 0 ? pool.AllocDirect() : pool.Alloc();
            if (page.IsNull)
            {
                AllocFailed();
                break;
            }
            if (!Take(page, pool, -1, out HeldPage h))
                continue;
            StressWorker? other = RandomOther();
            switch (_random.NextInt(4))
            {
                case 0:
                case 1:
                    if (other != null && other.Inbox.Count < InboxLimit)
                    {
                        other.Inbox.Enqueue(h);
                        inFlight++;
                        break;
                    }
                    goto case 2;
                case 2:
                    if (_deferredCount < MaxDeferred)
                    {
                        h.Due = Ops + 100 + _random.NextInt(10_000);
                        _deferred[_deferredCount++] = h;
                        inFlight++;
                        break;
                    }
                    goto default;
                default:
                    Give(h, allowDirect: (_random.Next() & 1) != 0);
                    break;
            }
        }
        pool.Dispose();
        PagesInFlightAtDispose += inFlight;
        _disposing.Add(pool);
    }

#if !HAS_FRAGMENTS
    // Without fragments in the build the mix never draws these (ParseMix drops them); kept for the switch.
    private void DoFrag() => DoDirect();

    private void DoPacket() => DoDirect();
#endif
}
