using System.Diagnostics.Tracing;
using Microsoft.Diagnostics.NETCore.Client;
using Microsoft.Diagnostics.Tracing;

namespace UnmanagedPool.PoolStat;

/// <summary>
/// Reads live pool statistics from another process: an EventPipe session enables the library's EventSource with
/// the <c>Stats</c> keyword, which makes the process write one <c>PoolStats</c> event per live pool and a
/// <c>StatsSnapshot</c> marker once per interval (the first round at once).
/// </summary>
internal sealed class StatsSession : IDisposable
{
    private readonly EventPipeSession _session;
    private readonly EventPipeEventSource _source;
    private readonly Task _pump;
    private readonly Dictionary<long, List<PoolSnapshot>> _pending = new();

    /// <summary>Raised on the reader thread with every complete round.</summary>
    public event Action<IReadOnlyList<PoolSnapshot>>? Snapshot;

    public StatsSession(DiagnosticsClient client, double intervalSeconds)
    {
        var provider = new EventPipeProvider(PoolEvents.Provider, EventLevel.Informational, PoolEvents.KeywordStats,
            new Dictionary<string, string> { ["IntervalSec"] = intervalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        try
        {
            _session = client.StartEventPipeSession(provider, requestRundown: false, circularBufferMB: 16);
        }
        catch (Exception e) when (e is ServerNotAvailableException or ServerErrorException or IOException or UnsupportedCommandException)
        {
            throw new PoolStatException($"error: could not start an EventPipe session: {e.Message}");
        }
        _source = new EventPipeEventSource(_session.EventStream);
        _source.Dynamic.All += OnEvent;
        _pump = Task.Run(() => _source.Process());
    }

    /// <summary>Completes when the event stream ends (the session stopped or the process exited).</summary>
    public Task Completion => _pump;

    private void OnEvent(TraceEvent e)
    {
        if (e.ProviderName != PoolEvents.Provider)
            return;
        int id = (int)e.ID;
        if (id == PoolEvents.PoolStatsId)
        {
            PoolSnapshot s = PoolSnapshot.FromEvent(e);
            if (!_pending.TryGetValue(s.Sequence, out var list))
                _pending[s.Sequence] = list = new List<PoolSnapshot>();
            list.Add(s);
        }
        else if (id == PoolEvents.StatsSnapshotId)
        {
            long sequence = PoolSnapshot.Long(e, "sequence");
            _pending.Remove(sequence, out var list);
            list ??= new List<PoolSnapshot>();
            foreach (long old in _pending.Keys.Where(k => k < sequence).ToList())
                _pending.Remove(old);
            Snapshot?.Invoke(list.OrderBy(p => p.Id).ToList());
        }
    }

    /// <summary>Waits for the first complete round; null when none came within <paramref name="timeout"/>.</summary>
    public static IReadOnlyList<PoolSnapshot>? ReadOnce(DiagnosticsClient client, TimeSpan timeout)
    {
        using var session = new StatsSession(client, 1);
        var first = new TaskCompletionSource<IReadOnlyList<PoolSnapshot>>(TaskCreationOptions.RunContinuationsAsynchronously);
        session.Snapshot += s => first.TrySetResult(s);
        Task.WaitAny(first.Task, session.Completion, Task.Delay(timeout));
        return first.Task.IsCompletedSuccessfully ? first.Task.Result : null;
    }

    public void Dispose()
    {
        try
        {
            _session.Stop();
        }
        catch (Exception e) when (e is ServerNotAvailableException or ServerErrorException or IOException or TimeoutException)
        {
            // The process exited: the stream has ended anyway.
        }
        _pump.Wait(TimeSpan.FromSeconds(5));
        _source.Dispose();
        _session.Dispose();
    }
}
