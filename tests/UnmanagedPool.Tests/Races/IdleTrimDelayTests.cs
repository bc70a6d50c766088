namespace UnmanagedPool.Tests.Races;

/// <summary>Issue 18 case 12: an idle-trim delay the timer cannot take is refused when it is set.</summary>
public class IdleTrimDelayTests
{
    public static TheoryData<TimeSpan> TooLong => new() { TimeSpan.FromDays(400), TimeSpan.MaxValue, TimeSpan.FromDays(199) };

    [Theory]
    [MemberData(nameof(TooLong))]
    public void A_delay_longer_than_the_timer_supports_is_refused_when_set(TimeSpan delay)
    {
        var options = new PagePoolOptions();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => options.IdleTrimDelay = delay);
        Assert.Equal(nameof(PagePoolOptions.IdleTrimDelay), e.ParamName);
        Assert.Null(options.IdleTrimDelay);
    }

    [Fact]
    public void The_longest_supported_delay_starts_the_idle_trimmer_on_the_first_slow_path()
    {
        using var pool = new PagePool(new PagePoolOptions { IdleTrimDelay = PagePoolOptions.MaxIdleTrimDelay, DebugMode = false });
        var page = pool.AllocPage();
        Assert.False(page.IsNull);
        Assert.True(pool.IdleTrimArmed);
        pool.PutPage(page);
    }
}
