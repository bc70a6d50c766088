using System.Globalization;
using System.Text;

namespace PacketProcessor.Bench;

/// <summary>One cell of the table: a program, a queue count, how redirected frames travel, and the buffer pool.</summary>
public readonly record struct BenchCell(string Program, int Queues, bool XdpFrames, string Pool);

/// <summary>The medians of the runs and the side-by-side markdown table.</summary>
public static class BenchTable
{
    /// <summary>The median of <paramref name="values"/> (the mean of the middle two for an even count).</summary>
    /// <exception cref="ArgumentException">No values.</exception>
    public static double Median(IReadOnlyCollection<double> values)
    {
        if (values.Count == 0)
            throw new ArgumentException("No values.", nameof(values));
        double[] sorted = [.. values.Order()];
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>
    /// The markdown table: one row per program, redirect form and queue count that has a pagepool median, with the
    /// arraypool median of the same program and queue count (arraypool runs always redirect as XdpFrames) and their ratio.
    /// </summary>
    public static string Format(IReadOnlyDictionary<BenchCell, List<double>> runs)
    {
        var median = runs.Where(kv => kv.Value.Count > 0).ToDictionary(kv => kv.Key, kv => Median(kv.Value));
        var sb = new StringBuilder();
        sb.AppendLine("| program | queues | redirected as | pagepool Mpps | arraypool Mpps | pagepool / arraypool |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (string program in median.Keys.Select(c => c.Program).Distinct().Order(StringComparer.Ordinal))
            foreach (bool frames in new[] { true, false })
                foreach (int queues in median.Keys.Where(c => c.Program == program).Select(c => c.Queues).Distinct().Order())
                {
                    if (!median.TryGetValue(new BenchCell(program, queues, frames, "pagepool"), out double pp))
                        continue;
                    string how = program != "redirect" ? "-" : frames ? "XdpFrame" : "bare page";
                    string ap = "-", ratio = "-";
                    if (median.TryGetValue(new BenchCell(program, queues, true, "arraypool"), out double a))
                    {
                        ap = a.ToString("0.0", CultureInfo.InvariantCulture);
                        ratio = a > 0 ? (pp / a).ToString("0.0", CultureInfo.InvariantCulture) + "x" : "-";
                    }
                    sb.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {program} | {queues} | {how} | {pp:0.0} | {ap} | {ratio} |"));
                }
        return sb.ToString();
    }
}
