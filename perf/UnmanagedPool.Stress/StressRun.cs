using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using HdrHistogram;
using Spectre.Console;
using UnmanagedPool.Tools;

namespace UnmanagedPool.Stress;

/// <summary>
/// One stress run: starts the workers, prints a progress line, stops them, gives every page back, disposes the
/// pools and checks every invariant. <see cref="Execute"/> returns the process exit code: 0 when every
/// invariant held, 1 otherwise.
/// </summary>
public sealed class StressRun
{
    private volatile bool _stop;
    private readonly IAnsiConsole _console;

    /// <summary>Prepares a run; <paramref name="poolFactory"/> builds the pool under test (the real one when null).</summary>
    public StressRun(StressOptions options, TextWriter output, Func<StressPoolContext, IStressPool>? poolFactory = null)
    {
        Options = options;
        Output = output;
        PoolFactory = poolFactory ?? (static c => new PagePoolStressPool(c));
        Workers = new StressWorker[options.Threads];
        _console = ToolConsole.Create(output);
    }

    /// <summary>The settings.</summary>
    public StressOptions Options { get; }

    /// <summary>Where the progress and the report go.</summary>
    public TextWriter Output { get; }

    /// <summary>Builds each pool, on the thread that will be its consumer.</summary>
    public Func<StressPoolContext, IStressPool> PoolFactory { get; }

    /// <summary>The ownership bitmap shared by all workers.</summary>
    public OwnershipMap Ownership { get; } = new();

    /// <summary>The violations recorded.</summary>
    public ViolationLog Violations { get; } = new();

    internal StressWorker[] Workers { get; }

    /// <summary>Whether the workers should stop.</summary>
    public bool StopRequested => _stop;

    /// <summary>Asks the workers to stop (deadline reached, or a violation with fail-fast on).</summary>
    public void RequestStop() => _stop = true;

    /// <summary>Runs, reports, returns the exit code.</summary>
    public int Execute()
    {
        StressOptions o = Options;
        TextWriter w = Output;
        _console.Line($"UnmanagedPool stress: {o.Threads} threads, {Fmt(o.Duration.TotalSeconds, "0.#")} s, seed {o.Seed}, order {o.Order}, fault rate {o.FaultRate.ToString("0.####", CultureInfo.InvariantCulture)}, mix {o.DescribeMix()}", "bold");
        w.Flush();
        for (int i = 0; i < Workers.Length; i++)
            Workers[i] = new StressWorker(this, i);

        using var ready = new Barrier(o.Threads + 1);
        using var looped = new Barrier(o.Threads);
        using var returned = new Barrier(o.Threads);
        var threads = new Thread[o.Threads];
        var setupErrors = new Exception?[o.Threads];
        for (int i = 0; i < threads.Length; i++)
        {
            StressWorker worker = Workers[i];
            int index = i;
            threads[i] = new Thread(() =>
            {
                try
                {
                    worker.CreatePool();
                }
                catch (Exception e)
                {
                    setupErrors[index] = e;
                }
                ready.SignalAndWait();
                if (setupErrors.Any(e => e != null))
                    return;
                worker.Run();
                looped.SignalAndWait();       // nobody hands pages over after this
                worker.ReturnAll();
                returned.SignalAndWait();
                worker.DrainInboxFully();
            })
            { Name = $"stress-{i}", IsBackground = true };
            threads[i].Start();
        }
        ready.SignalAndWait();
        if (setupErrors.FirstOrDefault(e => e != null) is { } setupError)
        {
            foreach (Thread t in threads)
                t.Join();
            w.WriteLine($"error: could not create the pool under test: {setupError}");
            return ExitCodes.Failed;
        }

        long start = Stopwatch.GetTimestamp();
        long deadline = start + (long)(o.Duration.TotalSeconds * Stopwatch.Frequency);
        long nextProgress = o.ProgressInterval > TimeSpan.Zero ? start + (long)(o.ProgressInterval.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        long lastOps = 0;
        long lastTicks = start;
        while (!StopRequested)
        {
            long now = Stopwatch.GetTimestamp();
            if (now >= deadline)
                break;
            if (now >= nextProgress)
            {
                long ops = Workers.Sum(x => Volatile.Read(ref x.Ops));
                double dt = (double)(now - lastTicks) / Stopwatch.Frequency;
                _console.Line($"[{Fmt((double)(now - start) / Stopwatch.Frequency, "0.0"),7}s] ops {Human(ops),8}  {Human((ops - lastOps) / dt),8}/s  " +
                            $"faults {Workers.Sum(x => x.Injector.Failures),7}  disposed pools {Workers.Sum(x => Volatile.Read(ref x.PoolsCreated)),6}  " +
                            $"violations {Violations.Counts.Values.Sum()}", "grey");
                w.Flush();
                lastOps = ops;
                lastTicks = now;
                nextProgress += (long)(o.ProgressInterval.TotalSeconds * Stopwatch.Frequency);
            }
            long sleepMs = Math.Clamp((Math.Min(deadline, nextProgress) - now) * 1000 / Stopwatch.Frequency, 1, 50);
            Thread.Sleep((int)sleepMs);
        }
        RequestStop();
        long end = Stopwatch.GetTimestamp();
        foreach (Thread t in threads)
            t.Join();
        double seconds = (double)(end - start) / Stopwatch.Frequency;
        return Report(seconds);
    }

    private int Report(double seconds)
    {
        TextWriter w = Output;
        StressOptions o = Options;
        IAnsiConsole c = _console;
        var checks = new List<(string Name, bool Ok, string Detail)>();

        // ---- counters of the main pools at quiescence, before Dispose ----
        long countersBad = 0;
        var total = new PagePoolStats();
        var sums = new long[13];
        for (int i = 0; i < Workers.Length; i++)
        {
            IStressPool pool = Workers[i].Pool;
            PagePoolStats s = pool.GetStats();
            long allocs = Workers.Sum(x => x.AllocsByPool[i]);
            long puts = Workers.Sum(x => x.PutsByPool[i]);
            long[] v = [s.AllocFast, s.AllocSlow, s.AllocSlowHighOrder, s.AllocEmpty, s.AllocRefill, s.AllocWaive, s.RecycleCached,
                        s.RecycleCacheFull, s.RecycleRing, s.RecycleRingFull, s.RecycleReleasedRefcnt, s.Hold, s.Release];
            for (int k = 0; k < v.Length; k++)
                sums[k] += v[k];
            void Bad(string what)
            {
                countersBad++;
                Violations.Report(ViolationNames.CountersInconsistent, $"pool {i}: {what}");
            }
            if (allocs != puts)
                Bad($"{allocs} pages handed out but {puts} given back");
            if (s.Hold < s.Release)
                Bad($"hold {s.Hold} < release {s.Release}");
            if (s.InFlight != s.Pooled)
                Bad($"hold - release = {s.InFlight} but {s.Pooled} pages pooled with no user holding one");
            if (!Workers.Any(x => x.UsedFragments))
            {
                long served = s.AllocFast + s.AllocRefill + s.AllocSlow + s.AllocSlowHighOrder;
                if (served != allocs)
                    Bad($"fast + refill + slow + slow_high_order = {served}, harness allocated {allocs}");
                long recycled = s.RecycleCached + s.RecycleRing + s.RecycleRingFull + s.RecycleReleasedRefcnt;
                if (recycled != puts)
                    Bad($"cached + ring + ring_full + released_refcnt = {recycled}, harness put {puts}");
            }
        }
        total = new PagePoolStats
        {
            AllocFast = sums[0], AllocSlow = sums[1], AllocSlowHighOrder = sums[2], AllocEmpty = sums[3], AllocRefill = sums[4],
            AllocWaive = sums[5], RecycleCached = sums[6], RecycleCacheFull = sums[7], RecycleRing = sums[8], RecycleRingFull = sums[9],
            RecycleReleasedRefcnt = sums[10], Hold = sums[11], Release = sums[12],
        };

        // ---- dispose the main pools; every pool must free itself with nothing in flight ----
        long notFreed = 0;
        foreach (StressWorker x in Workers)
        {
            try
            {
                x.Pool.Dispose();
            }
            catch (Exception e)
            {
                Violations.Report(ViolationNames.PoolException, $"Dispose: {e.GetType().Name}: {e.Message}");
            }
            if (!x.Pool.IsFreed || x.Pool.InFlight != 0)
            {
                notFreed++;
                Violations.Report(ViolationNames.InFlightNotZero, $"main pool of worker {Array.IndexOf(Workers, x)}: freed {x.Pool.IsFreed}, InFlight {x.Pool.InFlight} after Dispose with every page returned");
            }
        }
        // Pools disposed while pages were in flight: every page has been put back now, so each must be freed.
        long waitUntil = Stopwatch.GetTimestamp() + 5 * Stopwatch.Frequency;
        while (Workers.Any(x => x.DisposingPools.Any(p => !p.IsFreed)) && Stopwatch.GetTimestamp() < waitUntil)
            Thread.Sleep(10);
        foreach (StressWorker x in Workers)
        {
            foreach (IStressPool p in x.DisposingPools)
                if (!p.IsFreed)
                {
                    notFreed++;
                    Violations.Report(ViolationNames.InFlightNotZero, $"a pool disposed in flight by worker {Array.IndexOf(Workers, x)} is not freed: InFlight {p.InFlight}");
                }
            x.ReapDisposed();
        }
        long stillHeld = Ownership.HeldCount();
        if (stillHeld != 0)
            Violations.Report(ViolationNames.InFlightNotZero, $"the ownership bitmap still shows {stillHeld} pages held after every page was returned");
        long providerPages = Workers.Sum(x => x.Provider.PagesInUse);
        if (providerPages != 0)
            Violations.Report(ViolationNames.ProviderLeak, $"providers still have {providerPages} pages in use after every pool was freed");
        foreach (StressWorker x in Workers)
            x.Provider.Dispose();

        // ---- report ----
        long ops = Workers.Sum(x => x.Ops);
        long pageOps = Workers.Sum(x => x.PageOps);
        long faults = Workers.Sum(x => x.Injector.Failures);
        long allocFailures = Workers.Sum(x => x.AllocFailures);
        long poolsCreated = Workers.Sum(x => x.PoolsCreated);
        long poolsFreed = Workers.Sum(x => x.PoolsFreed);
        long inFlightAtDispose = Workers.Sum(x => x.PagesInFlightAtDispose);
        var hist = new LongHistogram[4];
        for (int k = 0; k < hist.Length; k++)
        {
            hist[k] = Latency.NewHistogram();
            foreach (StressWorker x in Workers)
                hist[k].Add(x.Latency[k]);
        }
        double nsPerTick = 1e9 / Stopwatch.Frequency;
        long timerOverhead = MeasureTimerOverhead();

        w.WriteLine();
        c.Heading($"result after {Fmt(seconds, "0.0")} s");
        Table totals = c.NewTable("", "count", "per second", "");
        totals.AddRow("operations", N(ops), N(ops / seconds), "ops/s");
        totals.AddRow("page operations", N(pageOps), N(pageOps / seconds), "pages/s (each alloc and each put)");
        totals.AddRow("faults injected", N(faults), "", $"allocations that returned short or null: {N(allocFailures)}");
        totals.AddRow("pools disposed in flight", N(poolsCreated), "", $"with {N(inFlightAtDispose)} pages in flight, {N(poolsFreed)} freed");
        totals.Columns[3].LeftAligned();
        c.Write(totals);
        c.WriteLine("by operation    " + string.Join("  ", Enum.GetValues<StressOp>().Where(op => o.Mix[(int)op] > 0)
            .Select(op => $"{StressOptions.NameOf(op)} {N(Workers.Sum(x => x.OpCounts[(int)op]))}")));
        w.WriteLine();
        string[] names = ["alloc", "put", "bulk alloc (64)", "bulk put (64)"];
        Table latency = c.NewTable("latency (ns)", "count", "p50", "p99", "p99.9", "max");
        for (int k = 0; k < hist.Length; k++)
        {
            LongHistogram h = hist[k];
            if (h.TotalCount == 0)
                continue;
            latency.AddRow(names[k], N(h.TotalCount), Ns(Latency.At(h, 50)), Ns(Latency.At(h, 99)), Ns(Latency.At(h, 99.9)), Ns(Latency.Max(h)));
        }
        c.Write(latency);
        c.Line($"HdrHistogram, 3 significant digits; Stopwatch, timer overhead ~{Fmt(timerOverhead * nsPerTick, "0")} ns included", "grey");
        w.WriteLine();
        Table stats = c.NewTable($"page pool (sum over the {Workers.Length} worker pools, before Dispose)", "count");
        stats.AddRow("alloc fast", N(total.AllocFast));
        stats.AddRow("alloc slow", N(total.AllocSlow));
        stats.AddRow("alloc slow high order", N(total.AllocSlowHighOrder));
        stats.AddRow("alloc empty", N(total.AllocEmpty));
        stats.AddRow("alloc refill", N(total.AllocRefill));
        stats.AddRow("alloc waive", N(total.AllocWaive));
        stats.AddRow("recycle cached", N(total.RecycleCached));
        stats.AddRow("recycle cache full", N(total.RecycleCacheFull));
        stats.AddRow("recycle ring", N(total.RecycleRing));
        stats.AddRow("recycle ring full", N(total.RecycleRingFull));
        stats.AddRow("recycle released refcnt", N(total.RecycleReleasedRefcnt));
        stats.AddRow("hold", N(total.Hold));
        stats.AddRow("release", N(total.Release));
        stats.AddRow("inflight", N(total.InFlight));
        c.Write(stats);
        w.WriteLine();
        c.Heading("invariants");
        void Check(string label, params string[] names)
        {
            long n = names.Sum(Violations.CountOf);
            string detail = n == 0 ? "" : $"  ({string.Join(", ", names.Where(x => Violations.CountOf(x) > 0).Select(x => $"{x} x{Violations.CountOf(x)}"))})";
            checks.Add((label, n == 0, detail));
            if (c.IsPlain())
                c.WriteLine($"  [{(n == 0 ? "ok" : "FAIL")}] {label}{detail}");
            else
                c.MarkupLine($"  {(n == 0 ? "[green][[ok]][/]" : "[red bold][[FAIL]][/]")} {Markup.Escape(label + detail)}");
        }
        Check($"InFlight 0 after Dispose ({Workers.Length} pools, {poolsCreated} disposed in flight)", ViolationNames.InFlightNotZero);
        Check("no double hand-out (ownership bitmap)", ViolationNames.DoubleHandOut, ViolationNames.ReturnedNotHeld);
        Check("no cookie mismatch", ViolationNames.CookieMismatch);
        Check("counters consistent (allocs = fast+refill+slow+slow_high_order; puts = cached+ring+ring_full+released_refcnt; hold-release = pooled)", ViolationNames.CountersInconsistent);
        Check("provider pages in use 0", ViolationNames.ProviderLeak);
        Check("no pool exception", ViolationNames.PoolException);
        Check("no allocation failure without an injected fault", ViolationNames.UnexpectedAllocFailure);
        bool ok = !Violations.Any;
        if (!ok)
        {
            w.WriteLine();
            c.Heading("first violations");
            foreach (string m in Violations.Messages)
                c.WriteLine("  " + m);
        }
        w.WriteLine();
        c.Line(ok ? "RESULT: PASS" : $"RESULT: FAIL ({string.Join(", ", Violations.Counts.Select(kv => $"{kv.Key} x{kv.Value}"))})", ok ? "green bold" : "red bold");
        w.Flush();

        if (o.JsonPath != null)
            WriteJson(o.JsonPath, seconds, ops, pageOps, faults, allocFailures, poolsCreated, hist, names, nsPerTick, total, checks, ok);
        return ok ? 0 : 1;

        string Ns(long ticks) => Fmt(ticks * nsPerTick, "N0");
    }

    private void WriteJson(string path, double seconds, long ops, long pageOps, long faults, long allocFailures, long poolsCreated,
        LongHistogram[] hist, string[] names, double nsPerTick, PagePoolStats total, List<(string Name, bool Ok, string Detail)> checks, bool ok)
    {
        using var stream = File.Create(path);
        using var j = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        j.WriteStartObject();
        j.WriteNumber("threads", Options.Threads);
        j.WriteNumber("seconds", Math.Round(seconds, 2));
        j.WriteNumber("seed", Options.Seed);
        j.WriteNumber("order", Options.Order);
        j.WriteNumber("faultRate", Options.FaultRate);
        j.WriteString("mix", Options.DescribeMix());
        j.WriteNumber("operations", ops);
        j.WriteNumber("operationsPerSecond", Math.Round(ops / seconds));
        j.WriteNumber("pageOperations", pageOps);
        j.WriteNumber("faultsInjected", faults);
        j.WriteNumber("allocationFailures", allocFailures);
        j.WriteNumber("poolsDisposedInFlight", poolsCreated);
        j.WriteStartObject("latencyNs");
        for (int k = 0; k < hist.Length; k++)
        {
            j.WriteStartObject(names[k]);
            j.WriteNumber("count", hist[k].TotalCount);
            j.WriteNumber("p50", Math.Round(Latency.At(hist[k], 50) * nsPerTick));
            j.WriteNumber("p99", Math.Round(Latency.At(hist[k], 99) * nsPerTick));
            j.WriteNumber("p999", Math.Round(Latency.At(hist[k], 99.9) * nsPerTick));
            j.WriteNumber("max", Math.Round(Latency.Max(hist[k]) * nsPerTick));
            j.WriteEndObject();
        }
        j.WriteEndObject();
        j.WriteStartObject("stats");
        j.WriteNumber("fast", total.AllocFast);
        j.WriteNumber("slow", total.AllocSlow);
        j.WriteNumber("slowHighOrder", total.AllocSlowHighOrder);
        j.WriteNumber("empty", total.AllocEmpty);
        j.WriteNumber("refill", total.AllocRefill);
        j.WriteNumber("waive", total.AllocWaive);
        j.WriteNumber("cached", total.RecycleCached);
        j.WriteNumber("cacheFull", total.RecycleCacheFull);
        j.WriteNumber("ring", total.RecycleRing);
        j.WriteNumber("ringFull", total.RecycleRingFull);
        j.WriteNumber("releasedRefcnt", total.RecycleReleasedRefcnt);
        j.WriteNumber("hold", total.Hold);
        j.WriteNumber("release", total.Release);
        j.WriteEndObject();
        j.WriteStartArray("invariants");
        foreach (var (name, pass, detail) in checks)
        {
            j.WriteStartObject();
            j.WriteString("name", name);
            j.WriteBoolean("ok", pass);
            if (detail.Length > 0)
                j.WriteString("detail", detail.Trim());
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteBoolean("pass", ok);
        j.WriteEndObject();
    }

    private static long MeasureTimerOverhead()
    {
        long best = long.MaxValue;
        for (int i = 0; i < 1000; i++)
        {
            long a = Stopwatch.GetTimestamp();
            long b = Stopwatch.GetTimestamp();
            best = Math.Min(best, b - a);
        }
        return best;
    }

    private static string N(double v) => Fmt(v, "N0");

    private static string Fmt(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    private static string Human(double v) => v switch
    {
        >= 1e9 => Fmt(v / 1e9, "0.00") + "G",
        >= 1e6 => Fmt(v / 1e6, "0.00") + "M",
        >= 1e3 => Fmt(v / 1e3, "0.0") + "k",
        _ => Fmt(v, "0"),
    };
}
