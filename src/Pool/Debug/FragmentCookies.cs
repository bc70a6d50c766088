using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace UnmanagedPool.Internal;

/// <summary>
/// Guard words around a fragment, as DPDK's mempool cookies (<c>RTE_MEMPOOL_HEADER_COOKIE1/2</c>,
/// <c>RTE_MEMPOOL_TRAILER_COOKIE</c>): a head cookie just before the bytes handed out and a tail cookie just after,
/// each mixed with its own address so a cookie copied elsewhere does not pass. An overrun or underrun changes a
/// cookie; freeing turns the head cookie into the "freed" value, so a second free is told apart from an overrun.
/// Debug mode only: a fragment armed here takes <see cref="Overhead"/> more bytes.
/// </summary>
/// <remarks>
/// Layout of an armed slot of <c>size + Overhead</c> bytes: <c>[head cookie 8][size bytes][tail cookie 8]</c>.
/// Cookies are written unaligned, so any fragment size works.
/// </remarks>
internal static unsafe class FragmentCookies
{
    /// <summary>Bytes of one cookie.</summary>
    public const int CookieSize = sizeof(ulong);

    /// <summary>Extra bytes an armed fragment takes: a head and a tail cookie.</summary>
    public const int Overhead = 2 * CookieSize;

    /// <summary>Head cookie of a fragment in use (DPDK's header cookie 1).</summary>
    public const ulong HeadInUse = 0xbadbadbadadd2e55UL;

    /// <summary>Head cookie of a freed fragment (DPDK's header cookie 2).</summary>
    public const ulong HeadFreed = 0xf2eef2eedadd2e55UL;

    /// <summary>Tail cookie (DPDK's trailer cookie).</summary>
    public const ulong Tail = 0xadd2e55badbadbadUL;

    /// <summary>Bytes a fragment of <paramref name="size"/> needs once armed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int SlotSize(int size) => size + Overhead;

    /// <summary>Writes the cookies around a fragment placed in the slot at <paramref name="slot"/>; returns where the fragment's bytes start.</summary>
    public static byte* Arm(byte* slot, int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        byte* user = slot + CookieSize;
        Unsafe.WriteUnaligned(slot, Mix(HeadInUse, slot));
        Unsafe.WriteUnaligned(user + size, Mix(Tail, user + size));
        return user;
    }

    /// <summary>Checks the cookies of the fragment whose bytes start at <paramref name="user"/>.</summary>
    /// <returns>What is wrong, or <see cref="CookieFault.None"/>.</returns>
    public static CookieFault Check(byte* user, int size)
    {
        byte* head = user - CookieSize;
        ulong h = Unsafe.ReadUnaligned<ulong>(head);
        if (h == Mix(HeadFreed, head))
            return CookieFault.AlreadyFreed;
        if (h != Mix(HeadInUse, head))
            return CookieFault.HeadOverwritten;
        if (Unsafe.ReadUnaligned<ulong>(user + size) != Mix(Tail, user + size))
            return CookieFault.TailOverwritten;
        return CookieFault.None;
    }

    /// <summary>Checks and throws <see cref="FragmentCookieException"/> naming the fragment when a cookie is wrong.</summary>
    public static void Verify(byte* user, int size)
    {
        CookieFault fault = Check(user, size);
        if (fault != CookieFault.None)
            Throw(user, size, fault);
    }

    /// <summary>Checks the cookies, then marks the fragment freed; throws when a cookie was wrong (double free, overrun, underrun).</summary>
    public static void Disarm(byte* user, int size)
    {
        Verify(user, size);
        byte* head = user - CookieSize;
        Unsafe.WriteUnaligned(head, Mix(HeadFreed, head));
    }

    /// <summary>Checks the cookies of a fragment marked put: its head cookie must read "freed", its tail cookie intact.</summary>
    public static void VerifyPut(byte* user, int size)
    {
        CookieFault fault = Check(user, size);
        if (fault == CookieFault.AlreadyFreed)
        {
            fault = Unsafe.ReadUnaligned<ulong>(user + size) == Mix(Tail, user + size) ? CookieFault.None : CookieFault.TailOverwritten;
        }
        else if (fault == CookieFault.None)
        {
            // A piece marked put whose head reads "in use": written over since (the head cookie is not the freed one).
            fault = CookieFault.HeadOverwritten;
        }
        if (fault != CookieFault.None)
            Throw(user, size, fault);
    }

    /// <summary>Marks a fragment in use again (a put that marked it freed failed further on).</summary>
    public static void Rearm(byte* user)
    {
        byte* head = user - CookieSize;
        Unsafe.WriteUnaligned(head, Mix(HeadInUse, head));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Mix(ulong cookie, byte* at) => cookie ^ (ulong)at;

    private static void Throw(byte* user, int size, CookieFault fault) =>
        throw new FragmentCookieException((nint)user, size, fault);
}

/// <summary>What a fragment cookie check found.</summary>
internal enum CookieFault
{
    /// <summary>Both cookies intact.</summary>
    None,

    /// <summary>The head cookie says the fragment was already freed.</summary>
    AlreadyFreed,

    /// <summary>The head cookie was overwritten: an underrun, or a neighbour's overrun.</summary>
    HeadOverwritten,

    /// <summary>The tail cookie was overwritten: the fragment's user wrote past its end.</summary>
    TailOverwritten,
}

/// <summary>A fragment's cookie was wrong.</summary>
internal sealed class FragmentCookieException(nint address, int size, CookieFault fault) : InvalidOperationException(
    $"Fragment 0x{address:x} ({size} bytes): " + fault switch
    {
        CookieFault.AlreadyFreed => "freed twice (the head cookie says it was already freed).",
        CookieFault.HeadOverwritten => $"head cookie at 0x{address - FragmentCookies.CookieSize:x} overwritten (underrun, or the previous fragment overran).",
        _ => $"tail cookie at 0x{address + size:x} overwritten (written past its end).",
    })
{
    /// <summary>First byte of the fragment.</summary>
    public nint Address { get; } = address;

    /// <summary>Size of the fragment.</summary>
    public int Size { get; } = size;

    /// <summary>What was wrong.</summary>
    public CookieFault Fault { get; } = fault;
}

/// <summary>What <see cref="FragmentCookieLedger.Claim"/> found for a put that names a piece by its address.</summary>
internal enum PieceClaim
{
    /// <summary>The address is in no armed piece of the page: the put is a page-level one.</summary>
    NotAPiece,

    /// <summary>The piece was live: it is now marked put.</summary>
    Claimed,

    /// <summary>The piece was already put, and an extra page reference (<c>RefPage</c>) covered this put.</summary>
    Shared,

    /// <summary>The piece was already put and no extra reference is left: a surplus put.</summary>
    AlreadyPut,
}

/// <summary>
/// The armed fragments of each page in debug mode, so that all of them can be checked when the page's last
/// reference comes back, and so that a put naming a piece by its address can be checked against that piece
/// (<see cref="Claim"/>). Thread-safe: one lock for every page (debug mode only).
/// </summary>
internal sealed unsafe class FragmentCookieLedger
{
    private struct Piece
    {
        public int Offset;
        public int Size;
        public bool Put;
    }

    private sealed class PageEntry
    {
        public readonly List<Piece> Pieces = new();

        /// <summary>References taken on the page beyond one per piece (<c>RefPage</c>, a shared packet): not yet used by a put.</summary>
        public long Shared;
    }

    private readonly Dictionary<nint, PageEntry> _pages = new();
    private readonly Lock _lock = new();

    /// <summary>Records the fragment at <paramref name="offset"/> (where its bytes start) of the page at <paramref name="page"/>.</summary>
    public void Record(byte* page, int offset, int size)
    {
        lock (_lock)
        {
            if (!_pages.TryGetValue((nint)page, out var entry))
                _pages[(nint)page] = entry = new PageEntry();
            entry.Pieces.Add(new Piece { Offset = offset, Size = size });
        }
    }

    /// <summary>Fragments recorded on the page.</summary>
    public int Count(byte* page)
    {
        lock (_lock)
            return _pages.TryGetValue((nint)page, out var entry) ? entry.Pieces.Count : 0;
    }

    /// <summary>Checks every fragment recorded on the page; throws for the first bad one. The records stay.</summary>
    public void Verify(byte* page)
    {
        lock (_lock)
        {
            if (_pages.TryGetValue((nint)page, out var entry))
                VerifyAll(page, entry);
        }
    }

    /// <summary>Checks every fragment of the page and forgets them; throws for the first bad one.</summary>
    public void CheckAndForget(byte* page)
    {
        PageEntry? entry;
        lock (_lock)
        {
            if (!_pages.Remove((nint)page, out entry))
                return;
        }
        VerifyAll(page, entry);
    }

    private static void VerifyAll(byte* page, PageEntry entry)
    {
        foreach (ref readonly Piece p in CollectionsMarshal.AsSpan(entry.Pieces))
        {
            if (p.Put)
                FragmentCookies.VerifyPut(page + p.Offset, p.Size);
            else
                FragmentCookies.Verify(page + p.Offset, p.Size);
        }
    }

    /// <summary>Forgets the page's fragments without checking (the page left the pool).</summary>
    public void Forget(byte* page)
    {
        lock (_lock)
            _pages.Remove((nint)page);
    }

    /// <summary>
    /// A put names <paramref name="address"/> in the page: finds the armed piece holding it (from its first byte to
    /// one past its last) and, when it is live, checks its cookies and marks it put (its head cookie turns to the
    /// "freed" value). A piece already put is refused unless an extra page reference (<see cref="AddShared"/>) is
    /// left to cover this put. Atomic under the ledger's lock: of two puts of one piece at once, one claims it.
    /// </summary>
    /// <param name="page">The page's first byte.</param>
    /// <param name="address">The address the put names.</param>
    /// <param name="offset">The piece's offset in the page (where its bytes start), or -1.</param>
    /// <param name="size">The piece's size, or 0.</param>
    public PieceClaim Claim(byte* page, byte* address, out int offset, out int size)
    {
        nint at = (nint)(address - page);
        lock (_lock)
        {
            if (_pages.TryGetValue((nint)page, out var entry))
            {
                Span<Piece> pieces = CollectionsMarshal.AsSpan(entry.Pieces);
                for (int i = 0; i < pieces.Length; i++)
                {
                    ref Piece p = ref pieces[i];
                    if (at < p.Offset || at > p.Offset + p.Size)
                        continue;
                    offset = p.Offset;
                    size = p.Size;
                    if (!p.Put)
                    {
                        FragmentCookies.Disarm(page + p.Offset, p.Size);
                        p.Put = true;
                        return PieceClaim.Claimed;
                    }
                    if (entry.Shared > 0)
                    {
                        entry.Shared--;
                        return PieceClaim.Shared;
                    }
                    return PieceClaim.AlreadyPut;
                }
            }
        }
        offset = -1;
        size = 0;
        return PieceClaim.NotAPiece;
    }

    /// <summary>Undoes a <see cref="Claim"/> whose put then failed: the piece is live again (or the extra reference is back).</summary>
    public void Unclaim(byte* page, int offset, PieceClaim claim)
    {
        lock (_lock)
        {
            if (!_pages.TryGetValue((nint)page, out var entry))
                return;
            if (claim == PieceClaim.Shared)
            {
                entry.Shared++;
                return;
            }
            foreach (ref Piece p in CollectionsMarshal.AsSpan(entry.Pieces))
            {
                if (p.Offset == offset && p.Put)
                {
                    FragmentCookies.Rearm(page + p.Offset);
                    p.Put = false;
                    return;
                }
            }
        }
    }

    /// <summary>
    /// One more reference was taken on the page (<c>RefPage</c>): when the page has armed pieces, one more put of a
    /// piece already put is legitimate (a packet shared with another holds the piece twice).
    /// </summary>
    public void AddShared(byte* page)
    {
        lock (_lock)
        {
            if (_pages.TryGetValue((nint)page, out var entry))
                entry.Shared++;
        }
    }
}
