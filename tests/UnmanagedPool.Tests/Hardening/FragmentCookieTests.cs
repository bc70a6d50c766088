using System.Runtime.InteropServices;
using UnmanagedPool.Internal;

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
