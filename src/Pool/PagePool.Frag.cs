using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UnmanagedPool.Internal;
using UnmanagedPool.Native;

namespace UnmanagedPool;

// Fragments: the kernel's page_pool_alloc_frag_netmem, page_pool_alloc_netmem, page_pool_alloc_va,
// page_pool_drain_frag and page_pool_free_frag (net/core/page_pool.c, include/net/page_pool/helpers.h).
//
// A fresh frag page gets pp_ref_count = BiasMax; each piece handed out only counts one more user in the pool's
// frag state (no atomic), and each piece put drops pp_ref_count by one. When the page cannot fit the next
// piece the pool drains it: it subtracts BiasMax - users, leaving exactly the pieces still out. Zero means
// nobody holds a piece and the page is reused at once; otherwise the last piece's put recycles it.
public sealed unsafe partial class PagePool
{
    /// <summary>
    /// The kernel's <c>BIAS_MAX</c> (<c>LONG_MAX &gt;&gt; 1</c>): the <c>pp_ref_count</c> a fresh fragment page
    /// starts with, so that handing out a piece needs no atomic operation.
    /// </summary>
    public const long BiasMax = long.MaxValue >> 1;

    /// <summary>
    /// Alignment of fragment sizes: the kernel's <c>dma_get_cache_alignment()</c> on x86-64 (one 64-byte cache
    /// line), so two pieces never share a cache line a device writes.
    /// </summary>
    public const int FragAlignment = 64;

    // A count above this still carries the pool's frag bias (no page is ever referenced 2^61 times).
    private const long FragBiasFloor = BiasMax >> 1;

    // The consumer's fragment cutter lives in _hot.Frag (see ConsumerHot): consumer thread only, as the kernel
    // keeps frag state in the pool for NAPI context. Threads other than the consumer share a second cutter, under
    // _fragLock. Each cutter writes its own fields (see FragCutter); this file chooses pages and counts.
    private FragCutter _sharedFrag;
    private readonly Lock _fragLock = new();

    /// <summary>Bytes a fragment or a page from <see cref="Alloc(int, out int)"/> may hold: the buffer less <see cref="PagePoolOptions.Offset"/>.</summary>
    public int UsableSize => BufferSize - _offset;

    // =====================================================================================================
    // Public API (any thread)
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_alloc_frag</c>: a piece of <paramref name="size"/> bytes (rounded up to
    /// <see cref="FragAlignment"/>) cut from the pool's current fragment page, at <paramref name="offset"/> bytes
    /// from the page start (pieces start at <see cref="PagePoolOptions.Offset"/>). Give it back with
    /// <see cref="PutPage(NetMemRef, int, bool)"/>, one put per piece.
    /// </summary>
    /// <remarks>
    /// On the consumer thread the pool's fragment page is cut with no lock and no atomic operation. Any other
    /// thread cuts a second, shared fragment page under a lock, so the method is safe from every thread; the
    /// <see cref="PagePoolConsumer"/> handle's method is the fast one.
    /// <para>
    /// A put names the page, not the piece: one piece put twice while another piece of the page is live leaves the
    /// count the two pieces put once each would leave, and the page is cut again over the live piece. Debug mode
    /// refuses that second put when it names the piece by its address (<see cref="FreeVa"/>, the address puts,
    /// <see cref="Packet.Free"/>); see <see cref="PutPageAt"/>.
    /// </para>
    /// </remarks>
    /// <returns>The page, or <see cref="NetMemRef.Null"/> when memory is exhausted.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is not in 1..<see cref="UsableSize"/>.</exception>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    public NetMemRef AllocFrag(int size, out int offset)
    {
        int aligned = AlignFragSize(size);
        if (OnConsumerThread())
            return AllocPiece(ref _hot.Frag, size, aligned, out offset, consumer: true);
        lock (_fragLock)
            return AllocPiece(ref _sharedFrag, size, aligned, out offset, consumer: false);
    }

    /// <summary>
    /// The kernel's <c>page_pool_alloc</c>: a whole buffer when <c>size * 2</c> exceeds <see cref="UsableSize"/>,
    /// otherwise a fragment; a fragment that leaves too little room for another of its size takes the rest of the
    /// page. Thread rules as <see cref="AllocFrag"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is not in 1..<see cref="UsableSize"/>.</exception>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    public NetMemRef Alloc(int size, out int offset) => Alloc(size, out offset, out _);

    /// <summary>
    /// <see cref="Alloc(int, out int)"/> that also reports <paramref name="trueSize"/>, the bytes the caller now
    /// owns from <paramref name="offset"/>: the aligned size, the folded tail of the page, or the whole usable
    /// buffer (the kernel's updated <c>*size</c>, used as truesize).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is not in 1..<see cref="UsableSize"/>.</exception>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    public NetMemRef Alloc(int size, out int offset, out int trueSize)
    {
        int aligned = AlignFragSize(size);
        if (OnConsumerThread())
            return AllocCore(ref _hot.Frag, size, aligned, out offset, out trueSize, consumer: true);
        lock (_fragLock)
            return AllocCore(ref _sharedFrag, size, aligned, out offset, out trueSize, consumer: false);
    }

    /// <summary>The kernel's <c>page_pool_free_va</c>: puts the page (or piece) that holds <paramref name="va"/>.</summary>
    /// <remarks>In debug mode the piece holding the address is checked and marked put: see <see cref="PutPageAt"/>.</remarks>
    /// <exception cref="InvalidOperationException">
    /// The address is in no live page, or (debug mode) the piece holding it was already put, or see
    /// <see cref="PutPage(NetMemRef, int, bool)"/>.
    /// </exception>
    public void FreeVa(void* va, bool allowDirect = false) => PutPageAt((byte*)va, -1, allowDirect);

    /// <summary>
    /// A put that names a piece by an address inside it (the address forms of <c>PutPage</c>, <c>PutFullPage</c>,
    /// <c>RecycleDirect</c> and <see cref="FreeVa"/>): <see cref="PutPage(NetMemRef, int, bool)"/> of the page
    /// holding <paramref name="address"/>. In debug mode the piece is checked first: it must be live (cut and not
    /// yet put by address), and it is marked put, so a second put of the same piece throws
    /// <see cref="InvalidOperationException"/> naming the page and the piece's offset and changes nothing, from any
    /// thread. A put by <see cref="NetMemRef"/> names the page alone and is not checked this way.
    /// </summary>
    /// <remarks>
    /// Without debug mode a put names a page, never a piece, as in the kernel: piece A put twice while piece B of the
    /// same page is live leaves the count that A and B put once each leave, so the pool takes the page back and cuts
    /// new pieces over B. The count cannot show that surplus; only a put beyond every piece handed out can be seen.
    /// </remarks>
    internal void PutPageAt(byte* address, int dmaSyncSize, bool allowDirect) =>
        PutPieceAt(ResolveAddress(address), address, dmaSyncSize, allowDirect);

    /// <summary><see cref="PutPageAt"/> once the page holding <paramref name="address"/> is known (a packet's fragment).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void PutPieceAt(NetMemRef page, byte* address, int dmaSyncSize, bool allowDirect)
    {
        if (_debug)
            DebugPutPiece(page, address, dmaSyncSize, allowDirect, default);
        else
            PutPage(page, dmaSyncSize, allowDirect);
    }

    /// <summary><see cref="PutPageAt"/> through the consumer handle (its address puts): the handle's put, with debug mode's piece check.</summary>
    internal void ConsumerPutAt(PagePoolConsumer handle, byte* address, int dmaSyncSize, bool allowDirect)
    {
        NetMemRef page = ResolveAddress(address);
        if (_debug)
            DebugPutPiece(page, address, dmaSyncSize, allowDirect, handle);
        else
            handle.PutPage(page, dmaSyncSize, allowDirect);
    }

    // =====================================================================================================
    // Core (consumer state with consumer: true; shared state under _fragLock otherwise)
    // =====================================================================================================

    /// <summary>Validates a fragment size and rounds it up to <see cref="FragAlignment"/> (at most the usable size).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int AlignFragSize(int size)
    {
        int usable = BufferSize - _offset;
        if ((uint)(size - 1) >= (uint)usable)
            ThrowFragSize(size, usable);
        int aligned = (size + (FragAlignment - 1)) & ~(FragAlignment - 1);
        return aligned <= usable ? aligned : usable;
    }

    /// <summary>Consumer thread only: the handle's fragment fast path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal NetMemRef ConsumerAllocFrag(int size, out int offset) => AllocPiece(ref _hot.Frag, size, AlignFragSize(size), out offset, consumer: true);

    /// <summary>Consumer thread only: the handle's <c>page_pool_alloc</c>.</summary>
    internal NetMemRef ConsumerAlloc(int size, out int offset, out int trueSize) =>
        AllocCore(ref _hot.Frag, size, AlignFragSize(size), out offset, out trueSize, consumer: true);

    private NetMemRef AllocCore(ref FragCutter f, int size, int aligned, out int offset, out int trueSize, bool consumer)
    {
        int usable = BufferSize - _offset;
        if (size * 2 > usable)
        {
            // Large request: a whole buffer, pp_ref_count 1.
            offset = _offset;
            trueSize = usable;
            return consumer ? ConsumerAlloc() : SharedAlloc();
        }
        NetMemRef page = AllocPiece(ref f, size, aligned, out offset, consumer);
        trueSize = aligned;
        if (page.IsNull)
            return page;
        int max = BufferSize;
        if (f.Offset + size > max)
        {
            // Very likely no room for another piece: append the tail to this one so truesize is not underestimated.
            trueSize = max - offset;
            f.TakeRest(max);
        }
        return page;
    }

    /// <summary>
    /// A piece of <paramref name="size"/> bytes (<paramref name="aligned"/> once rounded). In debug mode it is armed
    /// with cookies, as DPDK's mempool debug does: see <see cref="AllocPieceDebug"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private NetMemRef AllocPiece(ref FragCutter f, int size, int aligned, out int offset, bool consumer) =>
        _debug ? AllocPieceDebug(ref f, size, aligned, out offset, consumer) : AllocFragCore(ref f, aligned, out offset, consumer);

    /// <summary>
    /// Debug mode: the piece takes a slot of <see cref="FragAlignment"/> more bytes, laid out as
    /// <c>[guard line, its last 8 bytes the head cookie][size bytes][tail cookie][padding]</c>, so the bytes handed
    /// out keep their alignment. Every put of a page checks the cookies of all its armed pieces (see
    /// <see cref="CheckOwned"/>): an overrun or underrun is reported at the latest when the last piece comes back. A
    /// piece too large for the guard line is handed out unarmed.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private NetMemRef AllocPieceDebug(ref FragCutter f, int size, int aligned, out int offset, bool consumer)
    {
        int slot = FragAlignment + ((size + FragmentCookies.CookieSize + FragAlignment - 1) & ~(FragAlignment - 1));
        if (slot > BufferSize - _offset)
            return AllocFragCore(ref f, aligned, out offset, consumer);
        NetMemRef page = AllocFragCore(ref f, slot, out int start, consumer);
        if (page.IsNull)
        {
            offset = 0;
            return page;
        }
        offset = start + FragAlignment;
        FragmentCookies.Arm(page.Address + offset - FragmentCookies.CookieSize, size);
        DebugData.Cookies.Record(page.Address, offset, size);
        return page;
    }

    /// <summary>The kernel's <c>page_pool_alloc_frag_netmem</c> on one cutter; <paramref name="aligned"/> is already validated.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private NetMemRef AllocFragCore(ref FragCutter f, int aligned, out int offset, bool consumer)
    {
        if (f.TryCut(aligned, BufferSize, out NetMem* d, out offset))
            return new NetMemRef(d);
        // The consumer re-cuts a page whose every piece is back in place (drain + recycle + fresh bias in one
        // step), unless a checked recycle is needed (debug, DMA sync, disposed: limit 0).
        if (consumer && _recycleLimit != 0 && (d = f.TryRecut(aligned, _offset)) != null)
        {
            _hot.Stats.Cached++;
            _hot.Stats.Fast++;
            offset = _offset;
            return new NetMemRef(d);
        }
        return AllocFragSlow(ref f, aligned, out offset, consumer);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NetMemRef AllocFragSlow(ref FragCutter f, int aligned, out int offset, bool consumer)
    {
        NetMem* d = DrainFrag(ref f);
        bool drained = d != null;
        if (drained)
        {
            // Every piece came back: reuse the page at once (the kernel counts a cached recycle and a fast alloc).
            if (consumer)
            {
                _hot.Stats.Cached++;
                _hot.Stats.Fast++;
            }
            else
            {
                // Interlocked: _shared counters are incremented from any thread.
                Interlocked.Increment(ref _shared.Cached);
                Interlocked.Increment(ref _shared.Fast);
            }
            if (_debug)
                DebugOnAlloc(d);
        }
        else
        {
            NetMemRef fresh = consumer ? ConsumerAlloc() : SharedAlloc();
            if (fresh.IsNull)
            {
                offset = 0;
                return fresh;
            }
            d = fresh.Descriptor;
        }
        // BiasMax references held by the pool, one user.
        f.Start(d, _offset, aligned, drained);
        offset = _offset;
        return new NetMemRef(d);
    }

    /// <summary>
    /// The kernel's <c>page_pool_drain_frag</c> on a cutter (<see cref="FragCutter.Drain"/>): returns the page when
    /// nobody holds a piece and it can be recycled; null otherwise (there was none, the last piece's put recycles it,
    /// or it was released).
    /// </summary>
    private NetMem* DrainFrag(ref FragCutter f)
    {
        NetMem* d = f.Drain();
        return d != null && CanRecycle(d, -1) ? d : null;
    }

    /// <summary>Fragment pages the pool is cutting from (0, 1 or 2), for <see cref="PagePoolStats.Pooled"/>.</summary>
    // The cutters belong to other contexts; a published snapshot is all statistics need.
    private int FragPagesHeld => (_hot.Frag.PublishedPage != 0 ? 1 : 0) + (_sharedFrag.PublishedPage != 0 ? 1 : 0);

    /// <summary>Consumer thread only: the page fragments are being cut from now (0 when none).</summary>
    internal nint ConsumerFragPage
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _hot.Frag.Page;
    }

    /// <summary>
    /// Consumer thread only, no debug checks wanted: when <paramref name="page"/> is the fragment page being cut
    /// (this pool's page in use, by construction), puts one piece of it with <see cref="ConsumerPutFrag"/>.
    /// </summary>
    /// <returns>False when it is any other page: the caller takes its usual path.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryConsumerPutFrag(NetMemRef page)
    {
        NetMem* d = page.Descriptor;
        if ((nint)d != _hot.Frag.Page || d == null)
            return false;
        ConsumerPutFrag(d);
        return true;
    }

    /// <summary>
    /// Consumer thread only: a direct put of a piece of the consumer's current fragment page, taken back from its
    /// users count with no atomic (<see cref="FragCutter.PutOwn"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">More pieces put than handed out; nothing changes.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ConsumerPutFrag(NetMem* d) => _hot.Frag.PutOwn(d);

    /// <summary>
    /// Consumer thread only (or the consumer quiescent, as in <see cref="UnbindConsumer"/>): detaches the
    /// consumer's fragment page (<see cref="DrainFrag"/>). Returns the page when nobody holds a piece and it can be
    /// recycled; null when there was none or a piece is still out.
    /// </summary>
    private NetMem* ConsumerDetachFrag() => DrainFrag(ref _hot.Frag);

    /// <summary>The kernel's <c>page_pool_free_frag</c>, for both frag states: called by <see cref="Dispose"/>.</summary>
    private void FreeFrags()
    {
        FreeFrag(ref _hot.Frag);
        lock (_fragLock)
            FreeFrag(ref _sharedFrag);
    }

    private void FreeFrag(ref FragCutter f)
    {
        NetMem* d = f.Free();
        if (d != null)
            ReturnPage(d);
    }

    /// <summary>
    /// Called by <c>UnrefSlow</c>, for a page of this pool, when a put left a count that still carries a frag bias:
    /// true when the put took the count below <c>BiasMax - users</c> of the consumer's frag state, that is when
    /// more pieces were put than handed out. It reads the pool's fields only, never the descriptor: between the
    /// caller's decrement and this check another thread may have drained the page, seen every piece back,
    /// released it and freed the pool and its region.
    /// </summary>
    /// <remarks>
    /// The check runs only on the consumer thread, the one thread that moves the frag state. Another thread
    /// cannot read that state safely: between its decrement and its read the consumer may drain the page, find
    /// every piece back, and start cutting the same page again with a fresh bias and user count, so the
    /// comparison would mix two generations of the page and accuse a legitimate put. An over-release from
    /// another thread is caught later instead: the drain finds the count below its bias (it throws and keeps the
    /// page out of the pool), or a put finds the count at zero (a double put).
    /// </remarks>
    private bool FragOverReleased(NetMem* d, long left) =>
        // Only this pool's fields: the caller's atomic drop may have let another thread free the page already.
        OnConsumerThread() && _hot.Frag.OverReleased(d, left);

    /// <summary>
    /// Whether <paramref name="d"/> is the page the consumer or the shared path is cutting fragments from. Reads
    /// only this pool's fields (the page itself may already be another thread's to free).
    /// </summary>
    private bool IsFragPageBeingCut(NetMem* d) =>
        // The consumer and the shared path replace their frag page on their own threads: a published snapshot.
        _hot.Frag.PublishedPage == (nint)d || _sharedFrag.PublishedPage == (nint)d;

    /// <summary>
    /// The pool named by a page's <c>pp</c> field without a search or an allocation: <c>pp</c> is the pool's
    /// GCHandle. Null when the handle does not name a live pool.
    /// </summary>
    internal static PagePool? FromPpHandle(nint pp)
    {
        if (pp == 0)
            return null;
        return GCHandle.FromIntPtr(pp).Target is PagePool pool && pool._pp == pp ? pool : null;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowFragSize(int size, int usable) =>
        throw new ArgumentOutOfRangeException(nameof(size), size, $"A fragment is 1..{usable} bytes (the buffer less PagePoolOptions.Offset).");

    /// <summary>Test hook: the consumer frag state (page, offset, users).</summary>
    internal (NetMemRef Page, int Offset, long Users) ConsumerFragState => (new NetMemRef((NetMem*)_hot.Frag.Page), _hot.Frag.Offset, _hot.Frag.Users);
}
