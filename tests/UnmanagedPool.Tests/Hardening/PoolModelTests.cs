using CsCheck;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Hardening;

/// <summary>
/// Model-based property tests: random sequences of pool operations run against a small reference model of
/// what the pool must hold; every step checks the pool against the model, and CsCheck shrinks a failing
/// sequence to a minimal one.
/// </summary>
public unsafe class PoolModelTests
{
    public enum OpKind
    {
        Alloc,
        Put,
        RecycleDirect,
        Ref,
        Unref,
        Release,
        DoublePut,
        Trim,
        ToggleFault,
        Dispose,
        // Frag: add AllocFrag/fragment put here once fragments exist (the model then tracks references per fragment).
    }

    public readonly record struct Op(OpKind Kind, int Arg)
    {
        public override string ToString() => $"{Kind}({Arg})";
    }

    private static readonly Gen<OpKind> GenKind = Gen.Frequency(
        (6, Gen.Const(OpKind.Alloc)),
        (3, Gen.Const(OpKind.Put)),
        (3, Gen.Const(OpKind.RecycleDirect)),
        (2, Gen.Const(OpKind.Ref)),
        (2, Gen.Const(OpKind.Unref)),
        (1, Gen.Const(OpKind.Release)),
        (1, Gen.Const(OpKind.DoublePut)),
        (1, Gen.Const(OpKind.Trim)),
        (1, Gen.Const(OpKind.ToggleFault)),
        (1, Gen.Const(OpKind.Dispose)));

    private static readonly Gen<Op[]> GenOps = Gen.Select(GenKind, Gen.Int[0, 1000], (k, a) => new Op(k, a)).Array[1, 80];

    [Fact]
    public void Random_operation_sequences_keep_the_pool_equal_to_the_reference_model()
    {
        Gen.Select(GenOps, Gen.Bool).Sample((ops, debug) => Run(ops, debug), iter: 1500,
            print: t => $"debug={t.Item2} [{string.Join(", ", t.Item1)}]");
    }

    /// <summary>The reference model: pages held with their reference counts, pages pooled, counters.</summary>
    private sealed class Model
    {
        public readonly List<(NetMemRef Page, long Refs)> Held = new();
        public readonly HashSet<nint> PutSinceTrim = new();  // put back and still pooled: a put now is a double put
        public long Pooled;
        public bool Disposed;
        public bool Failing;
        public long DirectRecycled;
        public long AllocFailed;
    }

    private const int LowWater = 8;

    private static void Run(Op[] ops, bool debug)
    {
        var injector = ScheduleFaultInjector.Always();
        injector.Enabled = false;
        var provider = new PageProvider(regionShift: 21) { FaultInjector = injector };
        var pool = new PagePool(new PagePoolOptions
        {
            Provider = provider,
            DebugMode = debug,
            LowWaterMark = LowWater,
            PoolSize = 256,
        });
        var consumer = pool.BindConsumer();
        var m = new Model();
        try
        {
            foreach (Op op in ops)
            {
                Step(pool, consumer, injector, m, op);
                CheckInvariants(pool, m);
            }
            // Whatever happened, giving every page back and disposing must free the pool.
            injector.Enabled = false;
            foreach (var (page, refs) in m.Held)
            {
                if (refs > 1)
                    pool.UnrefPage(page, refs - 1);
                pool.PutPage(page);
            }
            m.Held.Clear();
            pool.Dispose();
            if (!pool.IsFreed)
                throw new Exception($"pool not freed after every page came back: inflight {pool.InFlight}");
        }
        finally
        {
            pool.Dispose();
            provider.Dispose();
        }
    }

    private static void Step(PagePool pool, PagePoolConsumer consumer, ScheduleFaultInjector injector, Model m, Op op)
    {
        int n = m.Held.Count;
        int i = n == 0 ? -1 : op.Arg % n;
        switch (op.Kind)
        {
            case OpKind.Alloc:
                if (m.Disposed)
                {
                    Expect<ObjectDisposedException>(() => consumer.AllocPage());
                    return;
                }
                long holdBefore = pool.GetStats().Hold;
                NetMemRef p = consumer.AllocPage();
                if (m.Failing && m.Pooled == 0)
                {
                    Require(p.IsNull, "alloc with the provider failing and nothing pooled returned a page");
                    m.AllocFailed++;
                    return;
                }
                Require(!p.IsNull, "alloc returned null");
                Require(p.Value.PpRefCount == 1, $"fresh page pp_ref_count {p.Value.PpRefCount}");
                foreach (var h in m.Held)
                    Require(h.Page != p, $"page {p} handed out twice");
                if (m.Pooled > 0)
                {
                    m.Pooled--;
                }
                else
                {
                    // Nothing pooled: the slow path took a bulk (up to 64) from the provider and kept the rest.
                    PagePoolStats s = pool.GetStats();
                    Require(s.Hold - holdBefore == s.Pooled + 1 && s.Pooled < PagePool.AllocCacheRefill,
                        $"slow path took {s.Hold - holdBefore} pages and pooled {s.Pooled}");
                    m.Pooled = s.Pooled;
                }
                m.PutSinceTrim.Remove((nint)p.Descriptor);
                m.Held.Add((p, 1));
                return;
            case OpKind.Put:
            case OpKind.RecycleDirect:
            {
                if (i < 0)
                    return;
                var (page, refs) = m.Held[i];
                if (op.Kind == OpKind.Put)
                    pool.PutPage(page);
                else
                    consumer.RecycleDirect(page);
                if (refs > 1)
                {
                    m.Held[i] = (page, refs - 1);
                    return;
                }
                m.Held.RemoveAt(i);
                if (m.Disposed)
                    return; // released, not recycled
                m.Pooled++;
                m.PutSinceTrim.Add((nint)page.Descriptor);
                if (op.Kind == OpKind.RecycleDirect)
                    m.DirectRecycled++;
                return;
            }
            case OpKind.Ref:
                if (i < 0)
                    return;
                pool.RefPage(m.Held[i].Page);
                m.Held[i] = (m.Held[i].Page, m.Held[i].Refs + 1);
                return;
            case OpKind.Unref:
            {
                if (i < 0)
                    return;
                var (page, refs) = m.Held[i];
                if (refs == 1)
                {
                    Expect<ArgumentOutOfRangeException>(() => pool.UnrefPage(page, 0));
                    Expect<InvalidOperationException>(() => pool.UnrefPage(page, 2));
                    Require(page.Value.PpRefCount == 1, "a refused unref changed the count");
                    return;
                }
                long left = pool.UnrefPage(page, refs - 1);
                Require(left == 1, $"unref left {left}, expected 1");
                m.Held[i] = (page, 1);
                return;
            }
            case OpKind.Release:
            {
                if (i < 0)
                    return;
                var (page, refs) = m.Held[i];
                if (refs != 1)
                {
                    Expect<InvalidOperationException>(() => pool.ReleasePage(page));
                    return;
                }
                pool.ReleasePage(page);
                m.Held.RemoveAt(i);
                return;
            }
            case OpKind.DoublePut:
            {
                if (m.PutSinceTrim.Count == 0)
                    return;
                nint d = m.PutSinceTrim.ElementAt(op.Arg % m.PutSinceTrim.Count);
                var page = new NetMemRef((NetMem*)d);
                Expect<InvalidOperationException>(() => pool.PutPage(page));
                Expect<InvalidOperationException>(() => consumer.RecycleDirect(page));
                return;
            }
            case OpKind.Trim:
                if (m.Disposed)
                {
                    Expect<ObjectDisposedException>(() => pool.Trim());
                    return;
                }
                pool.Trim();
                m.Pooled = Math.Min(m.Pooled, LowWater);
                m.PutSinceTrim.Clear(); // trimmed pages may have gone back to the OS: never touch them again
                return;
            case OpKind.ToggleFault:
                m.Failing = !m.Failing;
                injector.Enabled = m.Failing;
                return;
            case OpKind.Dispose:
                if (m.Disposed)
                    return;
                pool.Dispose();
                m.Disposed = true;
                m.Pooled = 0;
                m.PutSinceTrim.Clear();
                return;
        }
    }

    private static void CheckInvariants(PagePool pool, Model m)
    {
        PagePoolStats s = pool.GetStats();
        Require(s.Hold - s.Release == pool.InFlight, $"hold {s.Hold} - release {s.Release} != inflight {pool.InFlight}");
        Require(s.InFlight == m.Held.Count + m.Pooled,
            $"inflight {s.InFlight} != held {m.Held.Count} + pooled {m.Pooled} (pool says pooled {s.Pooled})");
        Require(s.Pooled == m.Pooled, $"pooled {s.Pooled}, model {m.Pooled}");
        Require(s.RecycleCached + s.RecycleCacheFull == m.DirectRecycled,
            $"cached {s.RecycleCached} + cache_full {s.RecycleCacheFull} != direct recycles {m.DirectRecycled}");
        Require(s.AllocFailed >= m.AllocFailed, $"alloc_failed {s.AllocFailed} < {m.AllocFailed}");
        Require(pool.IsFreed == (m.Disposed && m.Held.Count == 0), $"freed {pool.IsFreed}, disposed {m.Disposed}, held {m.Held.Count}");
        foreach (var (page, refs) in m.Held)
        {
            Require(page.IsPagePool, $"held page {page} lost pp_magic");
            Require(page.Value.PpRefCount == refs, $"page {page} pp_ref_count {page.Value.PpRefCount}, model {refs}");
        }
    }

    private static void Expect<T>(Action action) where T : Exception
    {
        try
        {
            action();
        }
        catch (T)
        {
            return;
        }
        throw new Exception($"expected {typeof(T).Name}");
    }

    private static void Require(bool condition, string what)
    {
        if (!condition)
            throw new Exception(what);
    }
}
