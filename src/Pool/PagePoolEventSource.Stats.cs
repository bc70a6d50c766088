using System.Diagnostics.Tracing;
using System.Globalization;

namespace UnmanagedPool;

// Periodic statistics for out-of-process readers (tools/PoolStat, dotnet-trace): while a session enables
// Keywords.Stats, a timer writes every live pool's counters once per interval. Nothing runs while no session
// asks for them.
public sealed partial class PagePoolEventSource
{
    /// <summary>Default interval between statistics rounds.</summary>
    public static readonly TimeSpan DefaultStatsInterval = TimeSpan.FromSeconds(1);

    /// <summary>The enable argument that sets the interval in seconds (fractions allowed, at least 0.05).</summary>
    public const string IntervalArgument = "IntervalSec";

    private readonly Lock _statsLock = new();
    private Timer? _statsTimer;
    private long _statsSequence;

    /// <inheritdoc />
    protected override void OnEventCommand(EventCommandEventArgs command)
    {
        if (command.Command is not (EventCommand.Enable or EventCommand.Disable or EventCommand.Update))
            return;
        TimeSpan interval = DefaultStatsInterval;
        if (command.Arguments != null && command.Arguments.TryGetValue(IntervalArgument, out string? text)
            && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds)
            && seconds >= 0.05 && seconds <= 3600)
            interval = TimeSpan.FromSeconds(seconds);
        bool wanted = IsEnabled(EventLevel.Informational, Keywords.Stats);
        lock (_statsLock)
        {
            if (wanted)
            {
                // The first round goes out at once so a one-shot reader need not wait an interval.
                _statsTimer ??= new Timer(static s => ((PagePoolEventSource)s!).WriteStatsRound(), this, Timeout.Infinite, Timeout.Infinite);
                _statsTimer.Change(TimeSpan.Zero, interval);
            }
            else if (_statsTimer != null)
            {
                _statsTimer.Dispose();
                _statsTimer = null;
            }
        }
    }

    /// <summary>Writes one <see cref="PoolStats"/> event per live pool, then <see cref="StatsSnapshot"/>.</summary>
    [NonEvent]
    internal void WriteStatsRound()
    {
        if (!IsEnabled(EventLevel.Informational, Keywords.Stats))
            return;
        // Interlocked: a slow round may overlap the next timer tick; each round gets its own number.
        long sequence = Interlocked.Increment(ref _statsSequence);
        int pools = 0;
        foreach (PagePool pool in PagePool.LivePools)
        {
            PagePoolStats s = pool.GetStats();
            PoolStats(sequence, pool.Id, pool.Name, s.AllocFast, s.AllocSlow, s.AllocSlowHighOrder, s.AllocEmpty,
                s.AllocRefill, s.AllocWaive, s.RecycleCached, s.RecycleCacheFull, s.RecycleRing, s.RecycleRingFull,
                s.RecycleReleasedRefcnt, s.Hold, s.Release, s.InFlight, s.Pooled, s.BufferSize, pool.Order, pool.Nid,
                pool.IsDisposed, s.Interface ?? string.Empty, s.QueueIndex ?? -1, s.DetachTime?.ToUnixTimeSeconds() ?? 0,
                s.MemoryProvider.ToString());
            pools++;
        }
        StatsSnapshot(sequence, pools);
    }
}
