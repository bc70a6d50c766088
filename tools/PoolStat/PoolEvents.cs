namespace UnmanagedPool.PoolStat;

/// <summary>The library's EventSource as PoolStat names it (kept in step with <c>PagePoolEventSource</c>).</summary>
internal static class PoolEvents
{
    public const string Provider = "UnmanagedPool-PagePool";
    public const long KeywordLifecycle = 0x1;
    public const long KeywordPageState = 0x2;
    public const long KeywordSlowPath = 0x4;
    public const long KeywordRing = 0x8;
    public const long KeywordStats = 0x10;
    public const long AllKeywords = KeywordLifecycle | KeywordPageState | KeywordSlowPath | KeywordRing | KeywordStats;
    public const int PoolStatsId = 10;
    public const int StatsSnapshotId = 11;

    /// <summary>The event's name, by id when the trace carries no name.</summary>
    public static string NameOf(int id, string? eventName) => id switch
    {
        1 => "PoolCreated",
        2 => "PoolDestroyed",
        3 => "Release",
        4 => "StateHold",
        5 => "StateRelease",
        6 => "UpdateNid",
        7 => "StalledShutdown",
        8 => "RingFull",
        9 => "SlowPathRefill",
        10 => "PoolStats",
        11 => "StatsSnapshot",
        _ => string.IsNullOrEmpty(eventName) ? $"Event{id}" : eventName,
    };
}
