using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Text;
using UnmanagedPool.Internal;
using UnmanagedPool.Native;

namespace UnmanagedPool;

// Debug mode: page poisoning (the kernel's PAGE_POISONING with POISON_FREE), leak tracking with allocation
// stacks (as Netty's ResourceLeakDetector levels) and the lifecycle hooks. Each call site in the core is guarded
// by the pool's readonly debug flag, so with debug mode off they cost one predictable branch. Everything here is
// debug-only and may allocate.
public sealed unsafe partial class PagePool
{
    /// <summary>The byte a page is filled with when put back in debug mode (the kernel's <c>POISON_FREE</c>).</summary>
    public const byte PoisonFree = 0x6b;

    /// <summary>At <see cref="PagePoolDebugLevel.Simple"/>, one allocation in this many is tracked for leaks (arbitrary, as Netty's 128).</summary>
    public const int LeakSampleInterval = 128;

    /// <summary>Most leaks listed in the "stalled pool shutdown" warning (arbitrary).</summary>
    private const int MaxLeaksDescribed = 16;

    private DebugState? _debugState;

    /// <summary>The debug level in force: <see cref="PagePoolDebugLevel.Off"/> unless <see cref="DebugMode"/> is on.</summary>
    public PagePoolDebugLevel DebugLevel => !_debug ? PagePoolDebugLevel.Off : DebugData.Level;

    /// <summary>
    /// Raised when debug mode finds a page written after it was put back, before the exception is thrown (on
    /// allocation) or instead of it (when the page leaves the pool).
    /// </summary>
    public event EventHandler<PageCorruptionEventArgs>? CorruptionDetected;

    /// <summary>Corruptions found so far in debug mode (write after put).</summary>
    public long CorruptionsDetected => _debugState is { } s ? Volatile.Read(ref s.Corruptions) : 0;

    /// <summary>
    /// Pages tracked by debug mode that are in flight with users, with their allocation stacks: every page at
    /// <see cref="PagePoolDebugLevel.Paranoid"/>, one allocation in <see cref="LeakSampleInterval"/> at
    /// <see cref="PagePoolDebugLevel.Simple"/>. Empty when debug mode is off. Oldest first.
    /// </summary>
    public IReadOnlyList<PageLeakRecord> ReportLeaks()
    {
        if (!_debug || _debugState is not { } state)
            return Array.Empty<PageLeakRecord>();
        long now = Stopwatch.GetTimestamp();
        var leaks = new List<(long Ticks, PageLeakRecord Record)>();
        foreach (var (key, rec) in state.Pages)
        {
            // Volatile: the record is written by whichever thread last allocated or put the page.
            if (!Volatile.Read(ref rec.Tracked) || rec.AllocStack is not { } stack)
                continue;
            var page = new NetMemRef((NetMem*)key);
            leaks.Add((rec.AllocTicks, new PageLeakRecord((nint)page.Address, rec.AllocThreadId,
                Stopwatch.GetElapsedTime(rec.AllocTicks, now), stack.ToString())));
        }
        leaks.Sort((a, b) => a.Ticks.CompareTo(b.Ticks));
        return leaks.ConvertAll(l => l.Record);
    }

    private DebugState DebugData
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _debugState ?? CreateDebugState();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private DebugState CreateDebugState()
    {
        PagePoolDebugLevel level = Options.DebugLevel == PagePoolDebugLevel.Off ? PagePoolDebugLevel.Simple : Options.DebugLevel;
        // Interlocked: the first hooks may run on several threads at once; one state wins.
        Interlocked.CompareExchange(ref _debugState, new DebugState(level), null);
        return _debugState!;
    }

    private partial void DebugOnHold(NetMem* d) => DebugData.Pages[(nint)d] = new PageDebugRecord();

    private partial void DebugOnAlloc(NetMem* d)
    {
        PageCorruptionException? bad = DebugCheckOnAlloc(d);
        if (bad != null)
            throw bad;
    }

    /// <summary>Consumer bulk allocation: checks <paramref name="pages"/>[<paramref name="from"/>..]; on a corruption gives every page of the call back and throws.</summary>
    private void DebugOnAllocBulk(Span<NetMemRef> pages, int from)
    {
        PageCorruptionException? first = null;
        for (int i = from; i < pages.Length; i++)
        {
            PageCorruptionException? bad = DebugCheckOnAlloc(pages[i].Descriptor);
            if (bad != null)
            {
                first ??= bad;
                pages[i] = default;
            }
        }
        if (first == null)
            return;
        // The caller gets an exception, not the pages: put the good ones back so none is lost.
        foreach (NetMemRef page in pages)
        {
            if (page.IsNull)
                continue;
            page.Value.PpRefCount = 0;
            RecycleUnrefed(page.Descriptor, -1);
        }
        throw first;
    }

    /// <summary>Checks the poison and starts leak tracking; a corrupted page is released and its exception returned.</summary>
    private PageCorruptionException? DebugCheckOnAlloc(NetMem* d)
    {
        DebugState state = DebugData;
        if (!state.Pages.TryGetValue((nint)d, out PageDebugRecord? rec))
            state.Pages[(nint)d] = rec = new PageDebugRecord();
        if (rec.Poisoned)
        {
            rec.Poisoned = false;
            var page = new NetMemRef(d);
            int bad = page.AsSpan().IndexOfAnyExcept(PoisonFree);
            if (bad >= 0)
            {
                var ex = new PageCorruptionException(Id, (nint)page.Address, bad, page.Address[bad], rec.PutStack?.ToString());
                // Take the page out of circulation: whoever still writes to it must not corrupt a live buffer.
                state.Pages.TryRemove((nint)d, out _);
                d->PpRefCount = 0;
                ReturnPage(d);
                ReportCorruption(state, ex, thrown: true);
                return ex;
            }
        }
        long seq = Interlocked.Increment(ref state.AllocSeq); // Interlocked: allocations sample from any thread
        if (state.Level == PagePoolDebugLevel.Paranoid || seq % LeakSampleInterval == 1)
        {
            rec.AllocStack = new StackTrace(2, false);
            rec.AllocThreadId = Environment.CurrentManagedThreadId;
            rec.AllocTicks = Stopwatch.GetTimestamp();
            // Volatile: ReportLeaks reads Tracked from another thread and then the fields written above.
            Volatile.Write(ref rec.Tracked, true);
        }
        return null;
    }

    private partial void DebugOnPut(NetMem* d)
    {
        DebugState state = DebugData;
        if (!state.Pages.TryGetValue((nint)d, out PageDebugRecord? rec))
            state.Pages[(nint)d] = rec = new PageDebugRecord();
        // Volatile: see DebugCheckOnAlloc.
        Volatile.Write(ref rec.Tracked, false);
        rec.AllocStack = null;
        if (state.Level == PagePoolDebugLevel.Paranoid)
        {
            rec.PutStack = new StackTrace(2, false);
            rec.PutThreadId = Environment.CurrentManagedThreadId;
        }
        var page = new NetMemRef(d);
        // Its pieces were checked by the put that dropped the last reference (CheckOwned).
        state.Cookies.Forget(page.Address);
        page.AsSpan().Fill(PoisonFree);
        rec.Poisoned = true;
    }

    /// <summary>
    /// Every put passes here in debug mode, before it changes anything: checks the cookies of every armed piece of
    /// the page, so an overrun or underrun throws <see cref="FragmentCookieException"/> naming the piece and leaves
    /// the page with its caller and the pool unchanged.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void DebugCheckFragCookies(NetMem* d) => DebugData.Cookies.Verify(new NetMemRef(d).Address);

    /// <summary>
    /// Debug mode: a put that names a piece by its address (<see cref="PutPageAt"/>, <see cref="FreeVa"/>, the
    /// consumer handle's address puts, <see cref="Packet.Free"/>). Before the put changes anything the armed piece
    /// holding <paramref name="address"/> must be live: it is marked put (its head cookie turns to "freed"), and a
    /// second put of it throws naming the page and the piece's offset, with every count as it was. A put whose
    /// address is in no armed piece (a whole page, a piece too large for cookies) is a page-level put, unchecked
    /// here. The put itself is then the usual one, on <paramref name="handle"/> when it is this pool's.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void DebugPutPiece(NetMemRef page, byte* address, int dmaSyncSize, bool allowDirect, PagePoolConsumer handle)
    {
        // The page's own checks first (a freed pool, a foreign page, a count of 0, a broken cookie): the ledger and
        // the cookies are read only on a live page of this pool that the caller references.
        CheckOwned(page);
        PieceClaim claim = DebugData.Cookies.Claim(page.Address, address, out int offset, out _);
        if (claim == PieceClaim.AlreadyPut)
            ThrowPiecePutTwice(page, offset);
        RaceHooks.At(RaceHooks.DebugPiecePut);
        try
        {
            if (handle.Pool == this)
                handle.PutPage(page, dmaSyncSize, allowDirect);
            else
                PutPage(page, dmaSyncSize, allowDirect);
        }
        catch when (claim != PieceClaim.NotAPiece)
        {
            // The put was refused (an over-release the count shows, a double put): the piece is live again. (A put
            // that dropped its reference and then failed to recycle leaves the page released and forgotten here.)
            DebugData.Cookies.Unclaim(page.Address, offset, claim);
            throw;
        }
    }

    /// <summary>Debug mode: one more reference on a page (<see cref="RefPage"/>) covers one more put of a piece already put.</summary>
    private void DebugOnRef(NetMem* d) => DebugData.Cookies.AddShared(new NetMemRef(d).Address);

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowPiecePutTwice(NetMemRef page, int offset) =>
        throw new InvalidOperationException(
            $"Page 0x{(nint)page.Address:x}: the fragment at offset {offset} was already put (a surplus put of one piece; debug mode). Nothing was changed.");

    private partial void DebugOnRelease(NetMem* d)
    {
        DebugData.Cookies.Forget(new NetMemRef(d).Address);
        if (!DebugData.Pages.TryRemove((nint)d, out PageDebugRecord? rec) || !rec.Poisoned)
            return;
        var page = new NetMemRef(d);
        int bad = page.AsSpan().IndexOfAnyExcept(PoisonFree);
        if (bad >= 0)
            ReportCorruption(DebugData, new PageCorruptionException(Id, (nint)page.Address, bad, page.Address[bad], rec.PutStack?.ToString()), thrown: false);
    }

    private void ReportCorruption(DebugState state, PageCorruptionException ex, bool thrown)
    {
        Interlocked.Increment(ref state.Corruptions); // Interlocked: found on any thread
        CorruptionDetected?.Invoke(this, new PageCorruptionEventArgs(ex, thrown));
    }

    private partial string DescribeLeaks()
    {
        if (!_debug)
            return string.Empty;
        IReadOnlyList<PageLeakRecord> leaks = ReportLeaks();
        if (leaks.Count == 0)
            return string.Empty;
        var sb = new StringBuilder();
        sb.Append(leaks.Count).Append(" tracked page(s) in flight (")
          .Append(DebugLevel == PagePoolDebugLevel.Paranoid ? "every page" : $"sampled 1 in {LeakSampleInterval}").Append(')');
        for (int i = 0; i < leaks.Count && i < MaxLeaksDescribed; i++)
        {
            PageLeakRecord l = leaks[i];
            sb.AppendLine().Append("page 0x").Append(l.Address.ToString("x")).Append(" allocated on thread ").Append(l.ThreadId)
              .Append(' ').Append((long)l.Age.TotalSeconds).Append(" s ago at:").AppendLine().Append(l.AllocationStack);
        }
        if (leaks.Count > MaxLeaksDescribed)
            sb.AppendLine().Append("... and ").Append(leaks.Count - MaxLeaksDescribed).Append(" more.");
        return sb.ToString();
    }

    /// <summary>The leak list the "stalled pool shutdown" warning carries.</summary>
    internal string LeakDescriptionForTests() => DescribeLeaks();

    partial void OnFreed() => _debugState?.Pages.Clear();

    /// <summary>Debug side data of one page, keyed by descriptor address. Written by the page's current owner.</summary>
    private sealed class PageDebugRecord
    {
        public bool Poisoned;
        public bool Tracked;
        public StackTrace? AllocStack;
        public int AllocThreadId;
        public long AllocTicks;
        public StackTrace? PutStack;
        public int PutThreadId;
    }

    private sealed class DebugState(PagePoolDebugLevel level)
    {
        public readonly PagePoolDebugLevel Level = level;
        public readonly ConcurrentDictionary<nint, PageDebugRecord> Pages = new();
        public readonly FragmentCookieLedger Cookies = new();
        public long AllocSeq;
        public long Corruptions;
    }
}
