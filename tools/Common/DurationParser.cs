using System.Globalization;

namespace UnmanagedPool.Tools;

/// <summary>
/// The one duration syntax of the command-line programs: a number with a unit (<c>500ms</c>, <c>10s</c>,
/// <c>2m</c>, <c>1h</c>, <c>1.5s</c>), units in a row from the largest (<c>1m30s</c>, <c>1h2m3s</c>),
/// <c>hh:mm:ss</c> (or <c>d.hh:mm:ss</c>, fractions of a second allowed), or a plain number of seconds (<c>3</c>, <c>0.5</c>). Case and surrounding
/// blanks do not matter; zero, negative and over-a-year durations are not durations.
/// </summary>
public static class DurationParser
{
    /// <summary>The forms accepted, for help texts and error messages.</summary>
    public const string Syntax = "10s, 500ms, 2m, 1h, 1m30s, 1.5s, hh:mm:ss or a number of seconds";

    /// <summary>The longest duration accepted: a year.</summary>
    public static readonly TimeSpan Max = TimeSpan.FromDays(365);

    /// <summary>The duration in <paramref name="text"/>, or false when it is not one.</summary>
    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        if (string.IsNullOrWhiteSpace(text))
            return false;
        ReadOnlySpan<char> s = text.AsSpan().Trim();
        double ms;
        if (IsPlainNumber(s))
        {
            if (!double.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double seconds))
                return false;
            ms = seconds * 1000;
        }
        else if (s.Contains(':'))
        {
            // hh:mm:ss only (two colons): "1:30" could be read as 1 h 30 min or 1 min 30 s.
            if (s.Count(':') != 2 || !TimeSpan.TryParseExact(s, "c", CultureInfo.InvariantCulture, out TimeSpan span))
                return false;
            ms = span.TotalMilliseconds;
        }
        else if (!TryParseUnits(s, out ms))
        {
            return false;
        }
        if (!(ms > 0) || ms > Max.TotalMilliseconds)
            return false;
        duration = TimeSpan.FromMilliseconds(ms);
        return true;
    }

    /// <summary>The duration in <paramref name="text"/>.</summary>
    /// <exception cref="FormatException"><paramref name="text"/> is not a duration; the message says which forms are.</exception>
    public static TimeSpan Parse(string? text) =>
        TryParse(text, out TimeSpan duration) ? duration : throw new FormatException(NotADuration(text));

    /// <summary>The message for a text that is not a duration.</summary>
    public static string NotADuration(string? text) => $"'{text}' is not a duration (use {Syntax}).";

    // Digits with at most one decimal point and at least one digit: no sign, no exponent, no thousands separator.
    private static bool IsPlainNumber(ReadOnlySpan<char> s)
    {
        int digits = 0, points = 0;
        foreach (char c in s)
        {
            if (char.IsAsciiDigit(c))
                digits++;
            else if (c == '.')
                points++;
            else
                return false;
        }
        return digits > 0 && points <= 1;
    }

    // A sequence of NUMBER UNIT pairs, each unit at most once and from the largest to the smallest: 1h30m, 2m5s, 1s500ms.
    private static bool TryParseUnits(ReadOnlySpan<char> s, out double totalMs)
    {
        totalMs = 0;
        int i = 0;
        int lastRank = int.MaxValue;
        while (i < s.Length)
        {
            int start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.'))
                i++;
            ReadOnlySpan<char> number = s[start..i];
            if (!IsPlainNumber(number) || !double.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value))
                return false;
            int unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i]))
                i++;
            (int rank, double scale) = UnitOf(s[unitStart..i]);
            if (rank < 0 || rank >= lastRank)
                return false;
            lastRank = rank;
            totalMs += value * scale;
        }
        return lastRank != int.MaxValue;
    }

    // Rank orders the units (a later unit must be smaller); scale is in milliseconds. Rank -1: not a unit.
    private static (int Rank, double Scale) UnitOf(ReadOnlySpan<char> unit) => unit switch
    {
        _ when unit.Equals("h", StringComparison.OrdinalIgnoreCase) => (3, 3_600_000),
        _ when unit.Equals("m", StringComparison.OrdinalIgnoreCase) || unit.Equals("min", StringComparison.OrdinalIgnoreCase) => (2, 60_000),
        _ when unit.Equals("s", StringComparison.OrdinalIgnoreCase) || unit.Equals("sec", StringComparison.OrdinalIgnoreCase) => (1, 1_000),
        _ when unit.Equals("ms", StringComparison.OrdinalIgnoreCase) => (0, 1),
        _ => (-1, 0),
    };
}
