using UnmanagedPool.Tools;

namespace UnmanagedPool.Tests.Tools;

/// <summary>The one duration syntax shared by PacketProcessor, PoolStat and the stress harness.</summary>
public class DurationParserTests
{
    [Theory]
    [InlineData("10s", 10_000)]
    [InlineData("2s", 2_000)]
    [InlineData("500ms", 500)]
    [InlineData("2m", 120_000)]
    [InlineData("1m", 60_000)]
    [InlineData("1m30s", 90_000)]
    [InlineData("1h", 3_600_000)]
    [InlineData("1h2m3s", 3_723_000)]
    [InlineData("1s500ms", 1_500)]
    [InlineData("1.5s", 1_500)]
    [InlineData("0.5m", 30_000)]
    [InlineData("3", 3_000)]
    [InlineData("0.25", 250)]
    [InlineData("00:00:10", 10_000)]
    [InlineData("01:02:03", 3_723_000)]
    [InlineData("00:00:01.5", 1_500)]
    [InlineData("1.00:00:00", 86_400_000)]
    [InlineData(" 10S ", 10_000)]
    [InlineData("2min", 120_000)]
    [InlineData("5sec", 5_000)]
    public void Every_accepted_form_parses_to_its_value(string text, long milliseconds)
    {
        Assert.True(DurationParser.TryParse(text, out TimeSpan t), text);
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), t);
        Assert.Equal(t, DurationParser.Parse(text));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("ten")]
    [InlineData("5x")]
    [InlineData("10x")]
    [InlineData("-5")]
    [InlineData("-5s")]
    [InlineData("+5")]
    [InlineData("0")]
    [InlineData("0s")]
    [InlineData("0ms")]
    [InlineData("s")]
    [InlineData("ms")]
    [InlineData("1e3")]
    [InlineData("1,5s")]
    [InlineData("1.2.3s")]
    [InlineData("30s1m")]
    [InlineData("1m1m")]
    [InlineData("1m 30s")]
    [InlineData("1:30")]
    [InlineData("00:00:00")]
    [InlineData("-00:00:10")]
    [InlineData("25:00:00")]
    [InlineData("366d")]
    [InlineData("9000h")]
    [InlineData("NaN")]
    [InlineData("Infinity")]
    public void Anything_else_is_not_a_duration(string? text)
    {
        Assert.False(DurationParser.TryParse(text, out TimeSpan t), text);
        Assert.Equal(TimeSpan.Zero, t);
        FormatException e = Assert.Throws<FormatException>(() => DurationParser.Parse(text));
        Assert.Contains(DurationParser.Syntax, e.Message);
    }

    [Fact]
    public void A_year_is_the_longest_duration()
    {
        Assert.True(DurationParser.TryParse("8760h", out TimeSpan year));
        Assert.Equal(DurationParser.Max, year);
        Assert.False(DurationParser.TryParse("8761h", out _));
    }
}
