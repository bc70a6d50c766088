using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UnmanagedPool.Native;

namespace UnmanagedPool.Internal;

/// <summary>
/// A fragment page being cut: the kernel's <c>frag_page</c>, <c>frag_offset</c> and <c>frag_users</c> with the
/// cutting and draining that move them (<c>page_pool_alloc_frag_netmem</c>, <c>page_pool_drain_frag</c>,
/// <c>page_pool_free_frag</c>). Its fields are written by these methods alone, in the context that owns the
/// cutter: the consumer thread for the one embedded in the consumer's hot state (so the fast path reaches it with
/// the same load as the alloc cache), the pool's fragment lock for the shared one. Other threads only read
/// <see cref="PublishedPage"/> and, on the consumer thread, <see cref="OverReleased"/>.
/// </summary>
/// <remarks>
/// A fresh page gets <c>pp_ref_count = BiasMax</c>; each piece cut counts one more user here (no atomic) and each
/// piece put drops <c>pp_ref_count</c> by one, so <c>pp_ref_count - (BiasMax - users)</c> is the pieces still out.
/// The pool around it chooses pages, checks recycling and counts statistics.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct FragCutter
{
    private const long BiasMax = PagePool.BiasMax;

    private nint _page;    // NetMem* of the page pieces are cut from, 0 when none
    private int _offset;   // next free byte in the page
    private long _users;   // pieces cut from this page: pp_ref_count == BiasMax - users + pieces still out

    /// <summary>The page being cut (0 when none). Owner's read.</summary>
    public readonly nint Page
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _page;
    }

    /// <summary>The next free byte in the page. Owner's read.</summary>
    public readonly int Offset => _offset;

    /// <summary>Pieces cut from the page, less the ones the owner took back with <see cref="PutOwn"/>. Owner's read.</summary>
    public readonly long Users => _users;

    /// <summary>The page being cut, read from another thread: a snapshot (the owner replaces it at any time).</summary>
    public nint PublishedPage =>
        // Volatile: the owner publishes and detaches the page on its own thread.
        Volatile.Read(ref _page);

    /// <summary>
    /// The fast path: a piece of <paramref name="aligned"/> bytes from the current page when it fits below
    /// <paramref name="end"/>, at <paramref name="offset"/> in <paramref name="page"/>; false when there is no page
    /// or no room.
    /// </summary>
    /// <remarks>
    /// A bool, not a null page: the inlined caller then branches once on the fit test (a returned pointer cost one more
    /// null test per piece in the JIT's output of FragBenchmarks).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryCut(int aligned, int end, out NetMem* page, out int offset)
    {
        NetMem* d = (NetMem*)_page;
        int off = _offset;
        if (d != null && off + aligned <= end)
        {
            // Plain write: the users count is owned by this context; a putter on another thread reads it only to
            // check its own put, and it got its piece after this write was made (see OverReleased).
            _users++;
            _offset = off + aligned;
            page = d;
            offset = off;
            return true;
        }
        page = null;
        offset = 0;
        return false;
    }

    /// <summary>
    /// Consumer only, the page full: when its count says every piece is back, cuts it again in place (drain,
    /// recycle and fresh bias in one step), the first piece of <paramref name="aligned"/> bytes at
    /// <paramref name="start"/>. Null when a piece is still out (or the page is shared with another reference).
    /// </summary>
    /// <remarks>
    /// A count that says every piece is back while a piece is live is a surplus put (one piece put twice): the count
    /// cannot tell it from the last piece's put, and neither can the kernel's. Debug mode catches the surplus put
    /// itself when it names the piece by its address.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NetMem* TryRecut(int aligned, int start)
    {
        NetMem* d = (NetMem*)_page;
        long allBack = BiasMax - _users;
        // Volatile: other threads' puts lower the count. Equal to BiasMax - users means every piece is back.
        if (d != null && Volatile.Read(ref d->PpRefCount) == allBack && d->RefCount == 1 && TryRebias(d, allBack))
        {
            _users = 1;
            _offset = start + aligned;
            return d;
        }
        return null;
    }

    /// <summary>
    /// Once per re-cut (not per piece): sets a fresh bias on a page whose count says every piece is back. Atomic, so
    /// that a surplus put landing after the check is not overwritten: the count then differs, the re-cut is refused
    /// and the drain sees the surplus.
    /// </summary>
    private static bool TryRebias(NetMem* d, long allBack) =>
        // Interlocked: other threads' puts may still lower the count (only a surplus one can, every piece being back).
        Interlocked.CompareExchange(ref d->PpRefCount, BiasMax, allBack) == allBack;

    /// <summary>
    /// Starts cutting <paramref name="d"/>: the pool's bias, one user, the first piece of <paramref name="aligned"/>
    /// bytes at <paramref name="start"/>. <paramref name="drained"/>: the page is one <see cref="Drain"/> took back
    /// with a count of 0, not a fresh page the caller holds alone.
    /// </summary>
    public void Start(NetMem* d, int start, int aligned, bool drained)
    {
        if (drained)
        {
            // Interlocked: a surplus put of a piece may land on the drained page right now; it takes the count below
            // 0, finds the double put and restores its reference. Adding the bias keeps that round trip, where a
            // plain store of BiasMax could overwrite its first half and leave the count one too high.
            Interlocked.Add(ref d->PpRefCount, BiasMax);
        }
        else
        {
            d->PpRefCount = BiasMax;
        }
        _users = 1;
        _offset = start + aligned;
        // Volatile: publishes the page after its count and users, for putters checking against it.
        Volatile.Write(ref _page, (nint)d);
    }

    /// <summary>The last piece cut takes the rest of the page (<c>page_pool_alloc</c>'s folded tail).</summary>
    public void TakeRest(int end) => _offset = end;

    /// <summary>
    /// The kernel's <c>page_pool_drain_frag</c>: detaches the page and drops the pool's bias (BiasMax - users),
    /// leaving exactly the pieces still out. Returns the page when nobody holds a piece (it is the caller's, with a
    /// count of 0); null when there was none or a piece is still out (its last put recycles the page).
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// More puts than pieces: the count is restored and the page left out of the pool's hands (in flight), so no
    /// later user can get a page someone else still writes.
    /// </exception>
    public NetMem* Drain()
    {
        NetMem* d = Detach(out long drain);
        if (d == null)
            return null;
        // Volatile: putters on other threads decrement the count; equal means every piece came back. The move to 0
        // is atomic all the same: a surplus put (a piece put twice) landing in between must not be overwritten, or
        // the drain below could no longer see it.
        if (Volatile.Read(ref d->PpRefCount) == drain)
        {
            RaceHooks.At(RaceHooks.DrainFragAllBack);
            // Interlocked: see above.
            if (Interlocked.CompareExchange(ref d->PpRefCount, 0, drain) == drain)
                return d;
        }
        long left = DropBias(d, drain);
        if (left < 0)
            FragThrowHelper.ThrowFragOverRelease(new NetMemRef(d));
        return left == 0 ? d : null;
    }

    /// <summary>
    /// The kernel's <c>page_pool_free_frag</c> (Dispose): <see cref="Drain"/> without the throw. An over-released
    /// page is left in flight, where the in-flight count reports it.
    /// </summary>
    /// <returns>The page when nobody holds a piece (the caller returns it); null otherwise.</returns>
    public NetMem* Free()
    {
        NetMem* d = Detach(out long drain);
        if (d == null)
            return null;
        return DropBias(d, drain) == 0 ? d : null;
    }

    /// <summary>
    /// Detaches the page being cut (null when there is none) and gives the bias the pool holds on it, BiasMax less
    /// the pieces handed out, for <see cref="Drain"/> and <see cref="Free"/> to drop.
    /// </summary>
    private NetMem* Detach(out long drain)
    {
        NetMem* d = (NetMem*)_page;
        drain = BiasMax - _users;
        if (d != null)
        {
            // Volatile: the page leaves the cutter before its bias drops, so a putter that sees the dropped count
            // also sees it detached (see OverReleased).
            Volatile.Write(ref _page, 0);
        }
        return d;
    }

    /// <summary>
    /// Drops the pool's bias from a detached page's count: the pieces still out are left. A negative result means
    /// more puts than pieces; the count is restored to what the putters left and the page stays out of the pool.
    /// </summary>
    private static long DropBias(NetMem* d, long drain)
    {
        // Interlocked: pieces still out are being put concurrently; exactly one side sees zero.
        long left = Interlocked.Add(ref d->PpRefCount, -drain);
        if (left < 0)
        {
            // Interlocked: as above; the count goes back to what the putters left.
            Interlocked.Add(ref d->PpRefCount, drain);
        }
        return left;
    }

    /// <summary>
    /// Consumer only: a direct put of a piece of the page being cut, <paramref name="d"/>. Instead of an atomic
    /// decrement of pp_ref_count it takes the piece back from the users count, which the drain subtracts from the
    /// bias: <c>pp_ref_count - (BiasMax - users)</c>, the pieces still out, drops by one either way.
    /// </summary>
    /// <exception cref="InvalidOperationException">More pieces put than handed out; nothing changes.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PutOwn(NetMem* d)
    {
        long users = _users - 1;
        // Volatile: other threads' puts lower the count; a stale (higher) value only makes the check lenient.
        if (BiasMax - Volatile.Read(ref d->PpRefCount) > users)
            FragThrowHelper.ThrowFragOverRelease(new NetMemRef(d));
        _users = users;
    }

    /// <summary>
    /// Owner only, after a put dropped <paramref name="d"/>'s count to <paramref name="left"/>: true when that put
    /// took it below <c>BiasMax - users</c>, that is more pieces put than cut. Reads the cutter's fields only, never
    /// the descriptor (another thread may have finished with the page since the drop).
    /// </summary>
    public readonly bool OverReleased(NetMem* d, long left) => _page == (nint)d && left < BiasMax - _users;
}
