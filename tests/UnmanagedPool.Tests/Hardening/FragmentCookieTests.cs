using System.Runtime.InteropServices;
using UnmanagedPool.Internal;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Hardening;

public unsafe class FragmentCookieTests
{
    [Fact]
    public void An_intact_fragment_passes_and_an_overrun_or_underrun_is_named()
    {
        byte* slab = (byte*)NativeMemory.AlignedAlloc(4096, 64);
        try
        {
            byte* a = FragmentCookies.Arm(slab, 100);
            byte* b = FragmentCookies.Arm(a + 100 + FragmentCookies.CookieSize, 37);
            Assert.Equal((nint)(slab + FragmentCookies.CookieSize), (nint)a);
            new Span<byte>(a, 100).Fill(0xff);
            new Span<byte>(b, 37).Fill(0xff);
            Assert.Equal(CookieFault.None, FragmentCookies.Check(a, 100));
            Assert.Equal(CookieFault.None, FragmentCookies.Check(b, 37));

            a[100] = 0; // one byte past the end of a
            Assert.Equal(CookieFault.TailOverwritten, FragmentCookies.Check(a, 100));
            var ex = Assert.Throws<FragmentCookieException>(() => FragmentCookies.Verify(a, 100));
            Assert.Contains($"0x{(nint)a:x}", ex.Message);
            Assert.Contains("past its end", ex.Message);

            b[-1] = 0; // one byte before b
            Assert.Equal(CookieFault.HeadOverwritten, FragmentCookies.Check(b, 37));
        }
        finally
        {
            NativeMemory.AlignedFree(slab);
        }
    }

    [Fact]
    public void A_second_free_of_a_fragment_is_told_apart_from_an_overrun()
    {
        byte* slab = (byte*)NativeMemory.AlignedAlloc(256, 64);
        try
        {
            byte* a = FragmentCookies.Arm(slab + 3, 50);
            FragmentCookies.Disarm(a, 50);
            Assert.Equal(CookieFault.AlreadyFreed, FragmentCookies.Check(a, 50));
            var ex = Assert.Throws<FragmentCookieException>(() => FragmentCookies.Disarm(a, 50));
            Assert.Equal(CookieFault.AlreadyFreed, ex.Fault);
            Assert.Equal(66, FragmentCookies.SlotSize(50));
        }
        finally
        {
            NativeMemory.AlignedFree(slab);
        }
    }

    [Fact]
    public void A_cookie_copied_to_another_place_does_not_pass()
    {
        byte* slab = (byte*)NativeMemory.AlignedAlloc(256, 64);
        try
        {
            byte* a = FragmentCookies.Arm(slab, 16);
            Buffer.MemoryCopy(slab, slab + 64, 32, 32); // the same bytes, 64 bytes further
            Assert.NotEqual(CookieFault.None, FragmentCookies.Check(slab + 64 + FragmentCookies.CookieSize, 16));
            Assert.Equal(CookieFault.None, FragmentCookies.Check(a, 16));
        }
        finally
        {
            NativeMemory.AlignedFree(slab);
        }
    }

    [Fact]
    public void The_ledger_checks_every_fragment_of_a_page_when_the_page_comes_back()
    {
        byte* page = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
        try
        {
            var ledger = new FragmentCookieLedger();
            int offset = 0;
            var sizes = new[] { 64, 200, 1000 };
            var starts = new List<int>();
            foreach (int size in sizes)
            {
                byte* user = FragmentCookies.Arm(page + offset, size);
                ledger.Record(page, (int)(user - page), size);
                starts.Add((int)(user - page));
                offset += FragmentCookies.SlotSize(size);
            }
            Assert.Equal(3, ledger.Count(page));
            ledger.CheckAndForget(page);
            Assert.Equal(0, ledger.Count(page));

            for (int i = 0; i < sizes.Length; i++)
                ledger.Record(page, starts[i], sizes[i]);
            page[starts[1] + 200] ^= 1; // the middle fragment overran
            var ex = Assert.Throws<FragmentCookieException>(() => ledger.CheckAndForget(page));
            Assert.Equal((nint)(page + starts[1]), ex.Address);
            ledger.Forget(page);
        }
        finally
        {
            NativeMemory.AlignedFree(page);
        }
    }
}

/// <summary>Debug mode arms every fragment the pool cuts with cookies and checks them on each put of the page.</summary>
public unsafe class PoolFragmentCookieTests
{
    private static PagePool DebugPool() => new(new PagePoolOptions { DebugMode = true, DebugLevel = PagePoolDebugLevel.Simple });

    [Fact]
    public void Pieces_keep_their_alignment_and_carry_a_cookie_on_each_side()
    {
        using var pool = DebugPool();
        NetMemRef a = pool.AllocFrag(100, out int offA);
        NetMemRef b = pool.AllocFrag(100, out int offB);
        Assert.Equal(a, b);
        Assert.Equal(0, offA % PagePool.FragAlignment);
        Assert.Equal(0, offB % PagePool.FragAlignment);
        byte* userA = a.Address + offA;
        Assert.Equal(CookieFault.None, FragmentCookies.Check(userA, 100));
        Assert.Equal(CookieFault.None, FragmentCookies.Check(b.Address + offB, 100));
        // The guard line sits between the two: a's tail cookie ends before b's head cookie begins.
        Assert.True(offB - FragmentCookies.CookieSize >= offA + 100 + FragmentCookies.CookieSize);
        new Span<byte>(userA, 100).Fill(0xAB); // the whole piece, and not a byte more
        pool.PutPage(a);
        pool.PutPage(b);
        var s = pool.GetStats();
        Assert.Equal(s.InFlight, s.Pooled);
    }

    [Fact]
    public void Without_debug_mode_pieces_are_packed_with_no_cookies()
    {
        using var pool = new PagePool(new PagePoolOptions());
        pool.AllocFrag(100, out int offA);
        pool.AllocFrag(100, out int offB);
        Assert.Equal(128, offB - offA);
    }

    [Fact]
    public void An_overrun_is_reported_at_the_next_put_of_the_page_and_the_put_does_not_happen()
    {
        var pool = DebugPool();
        NetMemRef a = pool.AllocFrag(100, out int offA);
        NetMemRef b = pool.AllocFrag(200, out int offB);
        byte* userA = a.Address + offA;
        byte saved = userA[100];
        userA[100] ^= 0xFF; // one byte past the end of a

        // Putting b (an innocent neighbour) finds a's broken cookie: the piece named is a.
        var ex = Assert.ThrowsAny<InvalidOperationException>(() => pool.PutPage(b));
        Assert.IsType<FragmentCookieException>(ex);
        Assert.Contains($"0x{(nint)userA:x}", ex.Message);
        Assert.Contains("past its end", ex.Message);
        long inFlight = pool.GetStats().InFlight;
        Assert.True(inFlight > 0);

        // Nothing changed: once the cookie is whole again both pieces go back and the pool frees cleanly.
        userA[100] = saved;
        pool.PutPage(b);
        pool.PutPage(a);
        pool.Dispose();
        Assert.True(pool.IsFreed);
        Assert.Equal(0, pool.Provider.PagesInUse);
    }

    [Fact]
    public void An_underrun_is_reported_as_a_head_cookie_overwrite()
    {
        using var pool = DebugPool();
        NetMemRef a = pool.AllocFrag(64, out int offA);
        byte* userA = a.Address + offA;
        byte saved = userA[-1];
        userA[-1] ^= 0xFF;
        var ex = Assert.Throws<FragmentCookieException>(() => pool.PutPage(a));
        Assert.Equal(CookieFault.HeadOverwritten, ex.Fault);
        userA[-1] = saved;
        pool.PutPage(a);
    }

    [Fact]
    public void The_consumer_handle_checks_cookies_too()
    {
        using var pool = DebugPool();
        PagePoolConsumer rx = pool.BindConsumer();
        NetMemRef a = rx.AllocFrag(300, out int offA);
        byte* userA = a.Address + offA;
        byte saved = userA[300];
        userA[300] ^= 0x5A;
        Assert.Throws<FragmentCookieException>(() => rx.PutPage(a));
        userA[300] = saved;
        rx.PutPage(a);
    }
}
