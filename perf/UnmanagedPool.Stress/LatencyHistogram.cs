using System.Numerics;
using System.Runtime.CompilerServices;

namespace UnmanagedPool.Stress;

/// <summary>
/// A log-linear histogram of non-negative integers (Stopwatch ticks), in the manner of HdrHistogram: values below
/// 32 have a bucket each; above, every power of two is cut into 32 sub-buckets, so a recorded value is known to
/// within 1/32 (about 3 %). All buckets are allocated up front: recording is one array increment and allocates
/// nothing. One instance per thread (no synchronisation); <see cref="Add"/> merges them at the end.
/// </summary>
public sealed class LatencyHistogram
{
    private const int SubBits = 5;
    private const int SubCount = 1 << SubBits;                  // 32
    /// <summary>Number of buckets: values up to 2^63 fit.</summary>
    public const int BucketCount = SubCount * (64 - SubBits + 1);

    private readonly long[] _counts = new long[BucketCount];
    private long _total;
    private long _max;

    /// <summary>Values recorded.</summary>
    public long Count => _total;

    /// <summary>Largest value recorded.</summary>
    public long Max => _max;

    /// <summary>Records one value (negative values count as 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Record(long value)
    {
        if (value < 0)
            value = 0;
        _counts[BucketOf((ulong)value)]++;
        _total++;
        if (value > _max)
            _max = value;
    }

    /// <summary>Bucket index of <paramref name="value"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int BucketOf(ulong value)
    {
        if (value < SubCount)
            return (int)value;
        int msb = 63 - BitOperations.LeadingZeroCount(value);   // >= SubBits
        int shift = msb - SubBits;
        int sub = (int)(value >> shift) - SubCount;             // 0..31
        return SubCount * (shift + 1) + sub;
    }

    /// <summary>Smallest value that falls in <paramref name="bucket"/>.</summary>
    public static ulong LowerBound(int bucket)
    {
        if (bucket < SubCount)
            return (ulong)bucket;
        int shift = bucket / SubCount - 1;
        int sub = bucket % SubCount;
        return (ulong)(SubCount + sub) << shift;
    }

    /// <summary>Largest value that falls in <paramref name="bucket"/>.</summary>
    public static ulong UpperBound(int bucket) => bucket + 1 >= BucketCount ? ulong.MaxValue : LowerBound(bucket + 1) - 1;

    /// <summary>Adds the counts of <paramref name="other"/> into this histogram.</summary>
    public void Add(LatencyHistogram other)
    {
        for (int i = 0; i < BucketCount; i++)
            _counts[i] += other._counts[i];
        _total += other._total;
        _max = Math.Max(_max, other._max);
    }

    /// <summary>
    /// The value at quantile <paramref name="q"/> (0..1): the upper bound of the bucket holding that rank, capped
    /// at the maximum recorded, so a reported percentile never understates. 0 when empty.
    /// </summary>
    public long ValueAtQuantile(double q)
    {
        if (_total == 0)
            return 0;
        long rank = Math.Max(1, (long)Math.Ceiling(q * _total));
        long seen = 0;
        for (int i = 0; i < BucketCount; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
                return (long)Math.Min(UpperBound(i), (ulong)_max);
        }
        return _max;
    }
}
