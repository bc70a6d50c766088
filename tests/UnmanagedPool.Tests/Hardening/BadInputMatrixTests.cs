using System.Runtime.InteropServices;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Hardening;

/// <summary>
/// Every public method of the pool and its consumer handle against bad input: a clear exception (naming the
/// address where there is one), and afterwards the pool works and its counters agree.
/// </summary>
public unsafe class BadInputMatrixTests
{
    private enum Bad { Null, Foreign, AlreadyPut, OtherPool }

    private enum BadAddress { Null, Stack, AlignedAlloc, AlreadyPut, OtherPool }

    /// <summary>The pools, pages and addresses one case needs.</summary>
    private sealed class Env : IDisposable
    {
        public readonly PagePool Pool = new(new PagePoolOptions { Name = "matrix" });
        public readonly PagePool Other = new(new PagePoolOptions { Name = "other" });
        public readonly PagePoolConsumer Consumer;
        public readonly NetMemRef Held;
        public readonly NetMemRef Put;
        public readonly NetMemRef OtherPage;
        public readonly nint Block = (nint)NativeMemory.AlignedAlloc(4096, 4096);

        public Env()
        {
            new Span<byte>((void*)Block, 4096).Clear();
            Consumer = Pool.BindConsumer();
            Held = Consumer.AllocPage();
            Put = Consumer.AllocPage();
            Consumer.RecycleDirect(Put);
            OtherPage = Other.AllocPage();
        }

        public NetMemRef Page(Bad bad) => bad switch
        {
            Bad.Null => NetMemRef.Null,
            Bad.Foreign => new NetMemRef((NetMem*)Block),
            Bad.AlreadyPut => Put,
            _ => OtherPage,
        };

        public nint Address(BadAddress bad, nint stack) => bad switch
        {
            BadAddress.Null => 0,
            BadAddress.Stack => stack,
            BadAddress.AlignedAlloc => Block + 100,
            BadAddress.AlreadyPut => (nint)Put.Address + 100,
            _ => (nint)OtherPage.Address + 100,
        };

        public void Dispose()
        {
            Consumer.RecycleDirect(Held);
            Pool.Dispose();
            Assert.True(Pool.IsFreed);
            Other.PutPage(OtherPage);
            Other.Dispose();
            NativeMemory.AlignedFree((void*)Block);
        }
    }

    private static readonly Dictionary<string, Action<Env, NetMemRef>> PageMethods = new()
    {
        ["PagePool.PutPage"] = (e, p) => e.Pool.PutPage(p),
        ["PagePool.PutPage(direct)"] = (e, p) => e.Pool.PutPage(p, 128, allowDirect: true),
        ["PagePool.PutFullPage"] = (e, p) => e.Pool.PutFullPage(p),
        ["PagePool.RecycleDirect"] = (e, p) => e.Pool.RecycleDirect(p),
        ["PagePool.PutPages"] = (e, p) => e.Pool.PutPages(new[] { p }),
        ["PagePool.UnrefPage"] = (e, p) => e.Pool.UnrefPage(p, 1),
        ["PagePool.ReleasePage"] = (e, p) => e.Pool.ReleasePage(p),
        ["PagePool.RefPage"] = (e, p) => e.Pool.RefPage(p),
        ["PagePoolConsumer.RecycleDirect"] = (e, p) => e.Consumer.RecycleDirect(p),
        ["PagePoolConsumer.PutPage"] = (e, p) => e.Consumer.PutPage(p),
        ["PagePoolConsumer.PutPage(ring)"] = (e, p) => e.Consumer.PutPage(p, -1, allowDirect: false),
    };

    private static readonly Dictionary<string, Action<Env, nint>> AddressMethods = new()
    {
        ["PagePool.PutPage"] = (e, a) => e.Pool.PutPage((byte*)a),
        ["PagePool.PutFullPage"] = (e, a) => e.Pool.PutFullPage((byte*)a),
        ["PagePool.RecycleDirect"] = (e, a) => e.Pool.RecycleDirect((byte*)a),
        ["PagePool.ReleasePage"] = (e, a) => e.Pool.ReleasePage((byte*)a),
        ["PagePoolConsumer.RecycleDirect"] = (e, a) => e.Consumer.RecycleDirect((byte*)a),
        ["PagePoolConsumer.PutPage"] = (e, a) => e.Consumer.PutPage((byte*)a),
    };

    public static TheoryData<string, int> PageCases()
    {
        var data = new TheoryData<string, int>();
        foreach (string m in PageMethods.Keys)
            foreach (Bad b in Enum.GetValues<Bad>())
                data.Add(m, (int)b);
        return data;
    }

    public static TheoryData<string, int> AddressCases()
    {
        var data = new TheoryData<string, int>();
        foreach (string m in AddressMethods.Keys)
            foreach (BadAddress b in Enum.GetValues<BadAddress>())
                data.Add(m, (int)b);
        return data;
    }

    [Theory]
    [MemberData(nameof(PageCases))]
    public void A_bad_page_is_refused_with_a_clear_exception_and_the_pool_stays_usable(string method, int bad)
    {
        using var env = new Env();
        NetMemRef page = env.Page((Bad)bad);
        nint address = page.IsNull ? 0 : (nint)page.Address;
        PagePoolStats before = env.Pool.GetStats();

        var ex = Assert.Throws<InvalidOperationException>(() => PageMethods[method](env, page));

        if ((Bad)bad == Bad.Null)
            Assert.Contains("null", ex.Message);
        else
            Assert.Contains($"0x{address:x}", ex.Message);
        AssertUnchangedAndUsable(env, before);
    }

    [Theory]
    [MemberData(nameof(AddressCases))]
    public void A_bad_address_is_refused_with_a_clear_exception_naming_it_and_the_pool_stays_usable(string method, int bad)
    {
        using var env = new Env();
        long onStack = 0;
        nint address = env.Address((BadAddress)bad, (nint)(&onStack));
        PagePoolStats before = env.Pool.GetStats();

        var ex = Assert.Throws<InvalidOperationException>(() => AddressMethods[method](env, address));

        // The message names the address given, or the page that holds it.
        nint page = (BadAddress)bad is BadAddress.AlreadyPut or BadAddress.OtherPool ? address - 100 : address;
        Assert.Contains($"0x{page:x}", ex.Message);
        AssertUnchangedAndUsable(env, before);
    }

    public static TheoryData<string> DisposedCases() => new(DisposedMethods.Keys);

    private static readonly Dictionary<string, Action<PagePool, PagePoolConsumer>> DisposedMethods = new()
    {
        ["PagePool.AllocPage"] = (p, _) => p.AllocPage(),
        ["PagePool.AllocPages"] = (p, _) => p.AllocPages(new NetMemRef[4]),
        ["PagePool.BindConsumer"] = (p, _) => p.BindConsumer(),
        ["PagePool.Trim"] = (p, _) => p.Trim(),
        ["PagePool.UpdateNid"] = (p, _) => p.UpdateNid(0),
        ["PagePoolConsumer.AllocPage"] = (_, c) => c.AllocPage(),
        ["PagePoolConsumer.AllocPages"] = (_, c) => c.AllocPages(new NetMemRef[4]),
    };

    [Theory]
    [MemberData(nameof(DisposedCases))]
    public void A_disposed_pool_refuses_allocation_with_object_disposed(string method)
    {
        var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        NetMemRef late = consumer.AllocPage();
        pool.Dispose();
        var ex = Assert.Throws<ObjectDisposedException>(() => DisposedMethods[method](pool, consumer));
        Assert.Contains($"PagePool {pool.Id}", ex.Message);
        Assert.False(pool.IsFreed);
        Assert.Equal(1, pool.InFlight);
        // A late put is no error: the page is released and the pool frees itself.
        pool.PutPage(late);
        Assert.True(pool.IsFreed);
        PagePoolStats s = pool.GetStats();
        Assert.Equal(s.Hold, s.Release);
        pool.Dispose(); // twice is harmless
    }

    public static TheoryData<string> RangeCases() => new(RangeMethods.Keys);

    private static readonly Dictionary<string, (Type Exception, bool NamesPage, Action<Env> Act)> RangeMethods = new()
    {
        ["UnrefPage nr 0"] = (typeof(ArgumentOutOfRangeException), false, e => e.Pool.UnrefPage(e.Held, 0)),
        ["UnrefPage nr -1"] = (typeof(ArgumentOutOfRangeException), false, e => e.Pool.UnrefPage(e.Held, -1)),
        ["UnrefPage nr above the references"] = (typeof(InvalidOperationException), true, e => e.Pool.UnrefPage(e.Held, 2)),
        ["UnrefPage nr long.MaxValue"] = (typeof(InvalidOperationException), true, e => e.Pool.UnrefPage(e.Held, long.MaxValue)),
        ["UpdateNid -2"] = (typeof(ArgumentOutOfRangeException), false, e => e.Pool.UpdateNid(-2)),
        ["UpdateNid 64"] = (typeof(ArgumentOutOfRangeException), false, e => e.Pool.UpdateNid(64)),
        ["UpdateNid off the consumer thread"] = (typeof(InvalidOperationException), false, e => RunOnThread(() => e.Pool.UpdateNid(0))),
        ["ReleasePage with two references"] = (typeof(InvalidOperationException), true, e =>
        {
            e.Pool.RefPage(e.Held);
            try { e.Pool.ReleasePage(e.Held); }
            finally { e.Pool.UnrefPage(e.Held, 1); }
        }),
        ["PutPages with one bad page puts none"] = (typeof(InvalidOperationException), false, e => e.Pool.PutPages(new[] { e.Held, NetMemRef.Null })),
        ["Consumer handle on another thread"] = (typeof(InvalidOperationException), false, _ => UseDebugConsumerOffItsThread()),
        ["Constructor with order 11"] = (typeof(ArgumentOutOfRangeException), false, _ => new PagePool(new PagePoolOptions { Order = 11 })),
        ["Constructor with pool size 0"] = (typeof(ArgumentOutOfRangeException), false, _ => new PagePool(new PagePoolOptions { PoolSize = 0 })),
        ["Constructor with null options"] = (typeof(ArgumentNullException), false, _ => new PagePool(null!)),
    };

    [Theory]
    [MemberData(nameof(RangeCases))]
    public void Out_of_range_arguments_are_refused_and_the_pool_stays_usable(string name)
    {
        using var env = new Env();
        var (type, namesPage, act) = RangeMethods[name];
        PagePoolStats before = env.Pool.GetStats();
        Exception ex = Assert.Throws(type, () => act(env));
        if (namesPage)
            Assert.Contains($"0x{(nint)env.Held.Address:x}", ex.Message);
        Assert.Equal(1, env.Held.Value.PpRefCount);
        AssertUnchangedAndUsable(env, before);
    }

    private static void UseDebugConsumerOffItsThread()
    {
        // A consumer handle of a debug pool, used off its thread: debug mode verifies the thread.
        using var pool = new PagePool(new PagePoolOptions { DebugLevel = PagePoolDebugLevel.Simple });
        var consumer = pool.BindConsumer();
        RunOnThread(() => consumer.AllocPage());
    }

    private static void RunOnThread(Action action)
    {
        Exception? caught = null;
        var t = new Thread(() =>
        {
            try { action(); }
            catch (Exception ex) { caught = ex; }
        });
        t.Start();
        t.Join();
        if (caught != null)
            throw caught;
    }

    [Fact]
    public void PutPages_with_the_same_page_twice_puts_it_once_and_refuses_the_second()
    {
        // PutPages checks every page before it puts any, but a page listed twice passes the check twice: the
        // second put is refused as a double put after the first went through. The pool stays consistent.
        var pool = new PagePool(new PagePoolOptions());
        var consumer = pool.BindConsumer();
        NetMemRef page = consumer.AllocPage();
        nint address = (nint)page.Address;
        PagePoolStats before = pool.GetStats();
        var ex = Assert.Throws<InvalidOperationException>(() => pool.PutPages(new[] { page, page }));
        Assert.Contains($"0x{address:x}", ex.Message);
        PagePoolStats after = pool.GetStats();
        Assert.Equal(before.Pooled + 1, after.Pooled);
        Assert.Equal(after.Pooled, after.InFlight);
        DebugModeTests.AssertConsistentAndUsable(pool, consumer);
        pool.Dispose();
        Assert.True(pool.IsFreed);
    }

    private static void AssertUnchangedAndUsable(Env env, PagePoolStats before)
    {
        PagePoolStats after = env.Pool.GetStats();
        Assert.Equal(before.Hold, after.Hold);
        Assert.Equal(before.Release, after.Release);
        Assert.Equal(before.Pooled, after.Pooled);
        Assert.Equal(1, env.Held.Value.PpRefCount);
        DebugModeTests.AssertConsistentAndUsable(env.Pool, env.Consumer, held: 1);
    }
}
