using System.Globalization;

namespace PacketProcessor.Cli;

/// <summary>Parses durations: <c>10s</c>, <c>500ms</c>, <c>2m</c>, <c>1h</c>, <c>1m30s</c>, a plain number of seconds, or a TimeSpan (<c>00:00:10</c>).</summary>
public static class DurationParser
{
    /// <summary>The duration in <paramref name="text"/>, or false when it is not one.</summary>
    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        if (string.IsNullOrWhiteSpace(text))
            return false;
        string s = text.Trim().ToLowerInvariant();
        if (double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double plain))
        {
            if (plain <= 0 || plain > 365 * 86400)
                return false;
            duration = TimeSpan.FromSeconds(plain);
            return true;
        }
        if (s.Contains(':'))
            return TimeSpan.TryParse(s, CultureInfo.InvariantCulture, out duration) && duration > TimeSpan.Zero;
        double totalMs = 0;
        int i = 0;
        bool any = false;
        while (i < s.Length)
        {
            int start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.'))
                i++;
            if (i == start || !double.TryParse(s.AsSpan(start, i - start), NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
                return false;
            int unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i]))
                i++;
            double scale = s[unitStart..i] switch
            {
                "ms" => 1,
                "s" or "sec" => 1000,
                "m" or "min" => 60_000,
                "h" => 3_600_000,
                _ => -1,
            };
            if (scale < 0)
                return false;
            totalMs += value * scale;
            any = true;
        }
        if (!any || totalMs <= 0 || totalMs > 365.0 * 86400 * 1000)
            return false;
        duration = TimeSpan.FromMilliseconds(totalMs);
        return true;
    }
}
