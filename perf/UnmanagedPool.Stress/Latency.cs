using System.Diagnostics;
using System.Runtime.CompilerServices;
using HdrHistogram;

namespace UnmanagedPool.Stress;

/// <summary>
/// The latency histograms of the workers: HdrHistogram's <see cref="LongHistogram"/> over Stopwatch ticks, three
/// significant digits (a value is known to within 0.1 %), up to a minute. Every bucket is allocated when the
/// histogram is made, so <see cref="Record"/> allocates nothing. One histogram per worker and kind (no
/// synchronisation); the report adds them up at the end.
/// </summary>
public static class Latency
{
    /// <summary>Significant decimal digits kept of each value.</summary>
    public const int SignificantDigits = 3;

    /// <summary>The largest value a histogram tells apart: a minute of Stopwatch ticks. Larger values count as this.</summary>
    public static readonly long HighestTrackable = 60 * Stopwatch.Frequency;

    /// <summary>A new, empty histogram with the range and precision above.</summary>
    public static LongHistogram NewHistogram() => new(1, HighestTrackable, SignificantDigits);

    /// <summary>Records <paramref name="ticks"/>, clamped to 0..<see cref="HighestTrackable"/> (a clock step back counts as 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Record(LongHistogram histogram, long ticks) => histogram.RecordValue(Math.Clamp(ticks, 0, HighestTrackable));

    /// <summary>The value at <paramref name="percentile"/> (0..100), the highest value of its bucket: a reported percentile never understates. 0 when empty.</summary>
    public static long At(HistogramBase histogram, double percentile) => histogram.TotalCount == 0 ? 0 : histogram.GetValueAtPercentile(percentile);

    /// <summary>The largest value recorded (to the histogram's precision); 0 when empty.</summary>
    public static long Max(HistogramBase histogram) => histogram.TotalCount == 0 ? 0 : histogram.GetMaxValue();
}
