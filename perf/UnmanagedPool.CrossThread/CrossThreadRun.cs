using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace UnmanagedPool.CrossThread;

/// <summary>Settings of one run of the program.</summary>
public sealed class CrossThreadOptions
{
    /// <summary>Measured rounds; each runs every method once.</summary>
    public int Rounds { get; set; } = 30;

    /// <summary>Pages (operations, for the single-thread methods) per method per round.</summary>
    public int Pages { get; set; } = 1 << 20;

    /// <summary>Rounds run first and not counted, so that the pool's methods are compiled at their final tier and the pools have grown.</summary>
    public int WarmupRounds { get; set; } = 2;

    /// <summary>
    /// Least time the warm-up lasts, in seconds, when <see cref="WarmupRounds"/> is not 0: warm-up rounds go on until
    /// both are reached. The runtime moves a method to its optimized code in the background after a delay that each
    /// newly compiled method restarts; the pool's slow calls (the refill, the flush to the ring) reach it only then,
    /// and a short group (the single-thread methods alone) would otherwise measure its first rounds on the first tier.
    /// </summary>
    public double WarmupSeconds { get; set; } = 1.0;

    /// <summary>Print one JSON object instead of the table.</summary>
    public bool Json { get; set; }

    /// <summary>Pin the consumer thread to CPU 0 and the worker to CPU 1.</summary>
    public bool Pin { get; set; }

    /// <summary>The methods to run, in program order (default: every one but the probes).</summary>
    public IReadOnlyList<string> Methods { get; set; } = DefaultMethods;

    /// <summary>Every method's name: the cross-thread ones (probes included), then the single-thread ones.</summary>
    public static IReadOnlyList<string> AllMethods { get; } = [.. CrossThreadHarness.Methods, .. SingleThreadHarness.Methods];

    /// <summary>The methods a run without <c>--methods</c> runs.</summary>
    public static IReadOnlyList<string> DefaultMethods { get; } =
        [.. CrossThreadHarness.Methods.Take(CrossThreadHarness.DefaultCount), .. SingleThreadHarness.Methods];

    /// <summary>
    /// The methods named in a comma-separated list (case-insensitive, any order, repeats ignored), in program order;
    /// <see cref="DefaultMethods"/> for null or blank.
    /// </summary>
    /// <exception cref="FormatException">A name is not a method.</exception>
    public static IReadOnlyList<string> ParseMethods(string? list)
    {
        if (string.IsNullOrWhiteSpace(list))
            return DefaultMethods;
        var named = new HashSet<string>(StringComparer.Ordinal);
        foreach (string part in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string? name = AllMethods.FirstOrDefault(m => string.Equals(m, part, StringComparison.OrdinalIgnoreCase));
            if (name == null)
                throw new FormatException($"--methods: unknown method '{part}'; the methods are {string.Join(", ", AllMethods)}.");
            named.Add(name);
        }
        if (named.Count == 0)
            throw new FormatException("--methods names no method.");
        return AllMethods.Where(named.Contains).ToArray();
    }
}

/// <summary>What one method measured over the rounds.</summary>
internal sealed class MethodResult(string name, string group, bool isPool, string[] baselines, int rounds)
{
    /// <summary>The method's name.</summary>
    public string Name { get; } = name;

    /// <summary><c>cross-thread</c> or <c>single-thread</c>.</summary>
    public string Group { get; } = group;

    /// <summary>Whether the method runs on the PagePool (0 B/page expected).</summary>
    public bool IsPool { get; } = isPool;

    /// <summary>The methods its per-round ratios are taken against.</summary>
    public string[] Baselines { get; } = baselines;

    /// <summary>ns/page of each measured round, in round order.</summary>
    public double[] Samples { get; } = new double[rounds];

    /// <summary>Managed bytes allocated in the measured rounds, both threads together.</summary>
    public long Bytes { get; set; }

    /// <summary>Pages (operations) of the measured rounds.</summary>
    public long Pages { get; set; }

    /// <summary>Bytes allocated per page.</summary>
    public double BytesPerPage => Pages == 0 ? 0 : (double)Bytes / Pages;
}

/// <summary>
/// Runs every method interleaved in one process: each round runs each method once over the same number of pages,
/// in an order that rotates from round to round, so every method sees the same host state and no method always
/// follows the same one. Per method: median and quartiles of ns/page, and medians of per-round ratios.
/// </summary>
internal sealed class CrossThreadRun(CrossThreadOptions options, TextWriter output)
{
    // Warm-up rounds this run took: at least options.WarmupRounds, more when options.WarmupSeconds asked for them.
    private int _warmupRoundsRun;

    /// <summary>
    /// Runs the rounds and writes the table or the JSON object. Returns the exit code: 0, or 1 when a pool method
    /// allocated managed memory in a measured round (the figures are written all the same).
    /// </summary>
    public int Execute()
    {
        string pinNote = "threads not pinned";
        bool pinned = false;
        int workerCpu = -1;
        var originalMask = new ulong[ThreadAffinity.MaskWords];
        if (options.Pin)
        {
            int tid = 0;
            string? error = ThreadAffinity.CheckAllowed(originalMask, 0, 1) ?? ThreadAffinity.TryPinCurrentThread(0, out tid);
            if (error == null)
            {
                workerCpu = 1;
                pinNote = $"consumer thread (tid {tid}) pinned to CPU 0";
            }
            else
            {
                pinNote = error;
            }
        }

        var results = new List<MethodResult>();
        using var cross = new CrossThreadHarness(workerCpu);
        using var single = new SingleThreadHarness();
        if (workerCpu >= 0)
        {
            if (cross.WorkerPinError == null)
            {
                pinned = true;
                pinNote += $", worker (tid {cross.WorkerTid}) to CPU 1";
            }
            else
            {
                // Both threads pinned or neither: the consumer goes back to the CPUs it had.
                string? restore = ThreadAffinity.TrySetCurrentThread(originalMask, out _);
                pinNote = "worker: " + cross.WorkerPinError + (restore == null ? "" : "; consumer left on CPU 0: " + restore);
            }
        }

        // Ratios only to the baselines that run.
        string[] crossBaselines = new[] { "ChannelOnly", "ChannelDescriptor", "ConcurrentQueuePool" }.Where(options.Methods.Contains).ToArray();
        string[] singleBaselines = options.Methods.Contains("Floor") ? ["Floor"] : [];
        var runs = new List<Func<int, (long Ticks, long Bytes)>>();
        for (int i = 0; i < CrossThreadHarness.Methods.Length; i++)
        {
            int method = i;
            string name = CrossThreadHarness.Methods[i];
            if (!options.Methods.Contains(name))
                continue;
            results.Add(new MethodResult(name, "cross-thread", name.StartsWith("PagePool", StringComparison.Ordinal), crossBaselines, options.Rounds));
            runs.Add(pages =>
            {
                var (ticks, consumerBytes, workerBytes) = cross.Run(method, pages);
                return (ticks, consumerBytes + workerBytes);
            });
        }
        for (int i = 0; i < SingleThreadHarness.Methods.Length; i++)
        {
            int method = i;
            string name = SingleThreadHarness.Methods[i];
            if (!options.Methods.Contains(name))
                continue;
            results.Add(new MethodResult(name, "single-thread", name != "Floor", singleBaselines, options.Rounds));
            runs.Add(pages => single.Run(method, pages));
        }

        var warmup = Stopwatch.StartNew();
        int warmed = 0;
        while (warmed < options.WarmupRounds || (options.WarmupRounds > 0 && warmup.Elapsed.TotalSeconds < options.WarmupSeconds))
        {
            for (int m = 0; m < runs.Count; m++)
                runs[m](options.Pages);
            warmed++;
        }
        _warmupRoundsRun = warmed;

        double nsPerTick = 1e9 / Stopwatch.Frequency;
        for (int r = 0; r < options.Rounds; r++)
        {
            for (int k = 0; k < runs.Count; k++)
            {
                int m = (r + k) % runs.Count;
                var (ticks, bytes) = runs[m](options.Pages);
                MethodResult result = results[m];
                result.Samples[r] = ticks * nsPerTick / options.Pages;
                result.Bytes += bytes;
                result.Pages += options.Pages;
            }
        }

        if (options.Json)
            WriteJson(results, pinned, pinNote);
        else
            WriteTable(results, pinNote);
        // The pool methods must not allocate: said on stderr (stdout may be the JSON object) and in the exit code.
        int exitCode = 0;
        foreach (MethodResult r in results.Where(r => r.IsPool && r.Bytes != 0))
        {
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"error: {r.Name} allocated {r.Bytes} B of managed memory in {r.Pages} pages ({r.BytesPerPage:0.###} B/page); pool methods must allocate nothing"));
            exitCode = 1;
        }
        return exitCode;
    }

    /// <summary>Median of the per-round ratios of <paramref name="m"/> to <paramref name="baseline"/>, with their quartiles.</summary>
    private static (double Median, double Q1, double Q3) Ratio(MethodResult m, MethodResult baseline)
    {
        var ratios = new double[m.Samples.Length];
        for (int r = 0; r < ratios.Length; r++)
            ratios[r] = m.Samples[r] / baseline.Samples[r];
        return Quartiles(ratios);
    }

    /// <summary>Median and quartiles (linear interpolation between closest ranks).</summary>
    internal static (double Median, double Q1, double Q3) Quartiles(double[] values)
    {
        double[] sorted = (double[])values.Clone();
        Array.Sort(sorted);
        return (Percentile(sorted, 0.5), Percentile(sorted, 0.25), Percentile(sorted, 0.75));
    }

    private static double Percentile(double[] sorted, double p)
    {
        if (sorted.Length == 0)
            return double.NaN;
        double at = p * (sorted.Length - 1);
        int lo = (int)Math.Floor(at);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
    }

    private static MethodResult ByName(List<MethodResult> results, string name) => results.First(r => r.Name == name);

    /// <summary>ChannelOnly's median and quartiles (the host state), or null when it did not run.</summary>
    private static (double Median, double Q1, double Q3)? HostState(List<MethodResult> results) =>
        results.FirstOrDefault(r => r.Name == "ChannelOnly") is { } channel ? Quartiles(channel.Samples) : null;

    private void WriteTable(List<MethodResult> results, string pinNote)
    {
        var ci = CultureInfo.InvariantCulture;
        output.WriteLine($"UnmanagedPool cross-thread: {options.Rounds} rounds of {options.Pages} pages per method, " +
                         $"methods interleaved in one process (order rotated each round), {_warmupRoundsRun} warm-up rounds (at least {options.WarmupRounds} and {options.WarmupSeconds:0.#} s); {pinNote}.");
        if (HostState(results) is var (hostMedian, hostQ1, hostQ3))
            output.WriteLine(string.Create(ci, $"host state: ChannelOnly (the hand-off alone between the two threads) median {hostMedian:0.00} ns/page, q1 {hostQ1:0.00}, q3 {hostQ3:0.00}."));
        else
            output.WriteLine("host state: ChannelOnly not run.");
        output.WriteLine();
        foreach (string group in results.Select(r => r.Group).Distinct())
        {
            List<MethodResult> rows = results.Where(r => r.Group == group).ToList();
            string[] baselines = rows[0].Baselines;
            int width = Math.Max(22, rows.Max(r => r.Name.Length));
            var header = new StringBuilder($"{group.PadRight(width)} {"median",8} {"q1",8} {"q3",8}");
            foreach (string b in baselines)
                header.Append(' ').Append(("x " + b).PadLeft(24));
            header.Append($" {"B/page",8}");
            output.WriteLine(header.ToString());
            foreach (MethodResult m in rows)
            {
                var (median, q1, q3) = Quartiles(m.Samples);
                var line = new StringBuilder(string.Create(ci, $"{m.Name.PadRight(width)} {median,8:0.00} {q1,8:0.00} {q3,8:0.00}"));
                foreach (string b in baselines)
                {
                    var (ratio, rq1, rq3) = Ratio(m, ByName(results, b));
                    line.Append(' ').Append(string.Create(ci, $"{ratio:0.00} ({rq1:0.00}-{rq3:0.00})").PadLeft(24));
                }
                line.Append(string.Create(ci, $" {m.BytesPerPage,8:0.###}"));
                output.WriteLine(line.ToString());
            }
            output.WriteLine();
        }
        output.WriteLine("ns/page: median and quartiles over the rounds. x B: median of the per-round ratios to method B (quartiles in brackets).");
    }

    private void WriteJson(List<MethodResult> results, bool pinned, string pinNote)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("program", "UnmanagedPool.CrossThread");
            w.WriteString("unit", "ns/page");
            w.WriteNumber("rounds", options.Rounds);
            w.WriteNumber("pages", options.Pages);
            w.WriteNumber("warmupRounds", options.WarmupRounds);
            w.WriteNumber("warmupSeconds", options.WarmupSeconds);
            w.WriteNumber("warmupRoundsRun", _warmupRoundsRun);
            w.WriteBoolean("pinned", pinned);
            w.WriteString("pin", pinNote);
            // A run with --methods lists only its methods; without ChannelOnly the host state is null.
            w.WriteStartObject("host");
            if (HostState(results) is var (hostMedian, hostQ1, hostQ3))
            {
                w.WriteNumber("channelOnlyMedian", hostMedian);
                w.WriteNumber("channelOnlyQ1", hostQ1);
                w.WriteNumber("channelOnlyQ3", hostQ3);
            }
            else
            {
                w.WriteNull("channelOnlyMedian");
                w.WriteNull("channelOnlyQ1");
                w.WriteNull("channelOnlyQ3");
            }
            w.WriteNumber("processorCount", Environment.ProcessorCount);
            w.WriteString("os", RuntimeInformation.OSDescription);
            w.WriteString("runtime", RuntimeInformation.FrameworkDescription);
            w.WriteEndObject();
            w.WriteStartArray("methods");
            foreach (MethodResult m in results)
            {
                var (median, q1, q3) = Quartiles(m.Samples);
                w.WriteStartObject();
                w.WriteString("name", m.Name);
                w.WriteString("group", m.Group);
                w.WriteBoolean("pool", m.IsPool);
                w.WriteNumber("median", median);
                w.WriteNumber("q1", q1);
                w.WriteNumber("q3", q3);
                w.WriteNumber("min", m.Samples.Min());
                w.WriteNumber("max", m.Samples.Max());
                w.WriteNumber("bytesPerPage", m.BytesPerPage);
                w.WriteStartObject("ratios");
                foreach (string b in m.Baselines)
                    w.WriteNumber(b, Ratio(m, ByName(results, b)).Median);
                w.WriteEndObject();
                w.WriteStartObject("ratioQuartiles");
                foreach (string b in m.Baselines)
                {
                    var (_, rq1, rq3) = Ratio(m, ByName(results, b));
                    w.WriteStartArray(b);
                    w.WriteNumberValue(rq1);
                    w.WriteNumberValue(rq3);
                    w.WriteEndArray();
                }
                w.WriteEndObject();
                w.WriteStartArray("samples");
                foreach (double s in m.Samples)
                    w.WriteNumberValue(Math.Round(s, 4));
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        output.WriteLine(Encoding.UTF8.GetString(stream.ToArray()));
    }
}
