using System.Globalization;
using System.Text;
using System.Text.Json;
using ScottPlot;

namespace UnmanagedPool.Results;

/// <summary>
/// The section of perf/RESULTS.md from perf/UnmanagedPool.CrossThread's JSON: a table per group of methods (median
/// and quartiles of ns/page, medians of per-round ratios, bytes per page) and a box plot per group (box q1..q3,
/// line at the median, whiskers to the furthest round within 1.5 inter-quartile ranges of the box, as Tukey's).
/// </summary>
internal static class CrossThreadSection
{
    private sealed record Method(string Name, string Group, double Median, double Q1, double Q3, double[] Samples,
        double BytesPerPage, List<(string Baseline, double Ratio)> Ratios)
    {
        /// <summary>The furthest rounds within 1.5 inter-quartile ranges of the box (the box's edge where none is).</summary>
        public (double Low, double High) Whiskers
        {
            get
            {
                double reach = 1.5 * (Q3 - Q1);
                double low = Samples.Where(s => s >= Q1 - reach).DefaultIfEmpty(Q1).Min();
                double high = Samples.Where(s => s <= Q3 + reach).DefaultIfEmpty(Q3).Max();
                return (Math.Min(low, Q1), Math.Max(high, Q3));
            }
        }
    }

    public static void Write(string jsonPath, string plots, StringBuilder md)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(jsonPath));
        JsonElement root = doc.RootElement;
        var ci = CultureInfo.InvariantCulture;
        var methods = root.GetProperty("methods").EnumerateArray().Select(m => new Method(
            m.GetProperty("name").GetString() ?? "",
            m.GetProperty("group").GetString() ?? "",
            m.GetProperty("median").GetDouble(),
            m.GetProperty("q1").GetDouble(),
            m.GetProperty("q3").GetDouble(),
            m.GetProperty("samples").EnumerateArray().Select(x => x.GetDouble()).ToArray(),
            m.GetProperty("bytesPerPage").GetDouble(),
            m.GetProperty("ratios").EnumerateObject().Select(r => (r.Name, r.Value.GetDouble())).ToList())).ToList();

        md.AppendLine("## Cross-thread, interleaved in one process (`perf/UnmanagedPool.CrossThread`)");
        md.AppendLine();
        md.AppendLine("One thread allocates and writes each page, another returns it, through the same single-producer single-consumer");
        md.AppendLine("hand-off for every method; every method runs once per round, in an order rotated each round, so all see the same");
        md.AppendLine("host state. ns/page: median (q1–q3) over the rounds. × B: the median of the per-round ratios to method B.");
        md.AppendLine("ChannelOnly is the hand-off alone (the floor of this shape); ChannelDescriptor adds, with no pool, each page's descriptor");
        md.AppendLine("line going to the putting thread and back (the traffic of a pool that checks and marks each page put back);");
        md.AppendLine("ConcurrentQueuePool is a ConcurrentQueue of pages writing the same descriptor line on each side; the single-thread");
        md.AppendLine("group is PagePoolBenchmarks' Floor, FastPath and RingPath.");
        md.AppendLine();
        JsonElement host = root.GetProperty("host");
        md.AppendLine(string.Create(ci, $"{root.GetProperty("rounds").GetInt32()} rounds of {root.GetProperty("pages").GetInt32()} pages per method; " +
            $"{root.GetProperty("pin").GetString()}. Host state seen: ChannelOnly median {host.GetProperty("channelOnlyMedian").GetDouble():0.00} ns/page " +
            $"(q1 {host.GetProperty("channelOnlyQ1").GetDouble():0.00}, q3 {host.GetProperty("channelOnlyQ3").GetDouble():0.00}); {host.GetProperty("processorCount").GetInt32()} CPUs, " +
            $"{host.GetProperty("os").GetString()}, {host.GetProperty("runtime").GetString()}."));
        md.AppendLine();

        foreach (string group in methods.Select(m => m.Group).Distinct())
        {
            var rows = methods.Where(m => m.Group == group).ToList();
            var baselines = rows[0].Ratios.Select(r => r.Baseline).ToList();
            md.AppendLine($"| {group} | ns/page median | q1 | q3 | " + string.Join(" | ", baselines.Select(b => "× " + b)) + " | B/page |");
            md.AppendLine("|---|---:|---:|---:|" + string.Concat(baselines.Select(_ => "---:|")) + "---:|");
            foreach (Method m in rows)
            {
                string ratios = string.Join(" | ", baselines.Select(b => m.Ratios.First(r => r.Baseline == b).Ratio.ToString("0.00", ci)));
                md.AppendLine(string.Create(ci, $"| {m.Name} | {m.Median:0.00} | {m.Q1:0.00} | {m.Q3:0.00} | {ratios} | {m.BytesPerPage:0.###} |"));
            }
            md.AppendLine();
            string png = $"crossthread-{group}.png";
            BoxPlot(rows, $"{group} methods, interleaved: ns/page per round", Path.Combine(plots, png));
            md.AppendLine($"![{group} methods: ns/page per round, box q1..q3, line at the median, whiskers to the furthest round within 1.5 IQR](plots/{png})");
            md.AppendLine();
        }
    }

    private static void BoxPlot(List<Method> rows, string title, string path)
    {
        var plt = new Plot();
        for (int i = 0; i < rows.Count; i++)
        {
            Method m = rows[i];
            var (low, high) = m.Whiskers;
            var box = plt.Add.Box(new Box
            {
                Position = i,
                BoxMin = m.Q1,
                BoxMax = m.Q3,
                BoxMiddle = m.Median,
                WhiskerMin = low,
                WhiskerMax = high,
            });
            box.FillColor = Colors.Category10[i % 10].WithAlpha(0.6);
        }
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            rows.Select((m, i) => new Tick(i, m.Name)).ToArray());
        plt.Axes.Bottom.MajorTickStyle.Length = 0;
        plt.Axes.Bottom.TickLabelStyle.FontSize = 12;
        plt.Axes.SetLimitsY(0, rows.Max(m => m.Whiskers.High) * 1.1);
        plt.Axes.SetLimitsX(-0.6, rows.Count - 0.4);
        plt.Title(title);
        plt.YLabel("ns per page (lower is better)");
        plt.HideGrid();
        plt.SavePng(path, Math.Max(700, 170 * rows.Count), 500);
    }
}
