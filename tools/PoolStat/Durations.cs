using System.Globalization;

namespace UnmanagedPool.PoolStat;

/// <summary>Parses <c>10s</c>, <c>500ms</c>, <c>2m</c>, <c>1.5</c> (seconds) or <c>hh:mm:ss</c>.</summary>
internal static class Durations
{
    public static TimeSpan Parse(string text)
    {
        string t = text.Trim().ToLowerInvariant();
        (string number, double scale) = t switch
        {
            _ when t.EndsWith("ms", StringComparison.Ordinal) => (t[..^2], 0.001),
            _ when t.EndsWith('s') => (t[..^1], 1),
            _ when t.EndsWith('m') => (t[..^1], 60),
            _ when t.EndsWith('h') => (t[..^1], 3600),
            _ => (t, 1),
        };
        if (double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && value > 0 && value < 1e7)
            return TimeSpan.FromSeconds(value * scale);
        if (TimeSpan.TryParse(t, CultureInfo.InvariantCulture, out TimeSpan span) && span > TimeSpan.Zero)
            return span;
        throw new PoolStatException($"error: '{text}' is not a duration (examples: 10s, 500ms, 2m, 00:00:10).", 2);
    }
}
