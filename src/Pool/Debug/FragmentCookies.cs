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

/// <summary>
/// The armed fragments of each page in debug mode, so that all of them can be checked when the page's last
/// reference comes back (a fragment put does not say which fragment it was). Thread-safe.
/// </summary>
internal sealed unsafe class FragmentCookieLedger
{
    private readonly Dictionary<nint, List<(int Offset, int Size)>> _pages = new();
    private readonly Lock _lock = new();

    /// <summary>Records the fragment at <paramref name="offset"/> (where its bytes start) of the page at <paramref name="page"/>.</summary>
    public void Record(byte* page, int offset, int size)
    {
        lock (_lock)
        {
            if (!_pages.TryGetValue((nint)page, out var list))
                _pages[(nint)page] = list = new List<(int, int)>();
            list.Add((offset, size));
        }
    }

    /// <summary>Fragments recorded on the page.</summary>
    public int Count(byte* page)
    {
        lock (_lock)
            return _pages.TryGetValue((nint)page, out var list) ? list.Count : 0;
    }

    /// <summary>Checks every fragment recorded on the page; throws for the first bad one. The records stay.</summary>
    public void Verify(byte* page)
    {
        lock (_lock)
        {
            if (!_pages.TryGetValue((nint)page, out var list))
                return;
            foreach (var (offset, size) in CollectionsMarshal.AsSpan(list))
                FragmentCookies.Verify(page + offset, size);
        }
    }

    /// <summary>Checks every fragment of the page and forgets them; throws for the first bad one.</summary>
    public void CheckAndForget(byte* page)
    {
        List<(int Offset, int Size)>? list;
        lock (_lock)
        {
            if (!_pages.Remove((nint)page, out list))
                return;
        }
        foreach (var (offset, size) in CollectionsMarshal.AsSpan(list))
            FragmentCookies.Verify(page + offset, size);
    }

    /// <summary>Forgets the page's fragments without checking (the page left the pool).</summary>
    public void Forget(byte* page)
    {
        lock (_lock)
            _pages.Remove((nint)page);
    }
}
