using Microsoft.Diagnostics.Tracing;
using Spectre.Console;

namespace UnmanagedPool.PoolStat;

/// <summary><c>report FILE.nettrace</c>: pool events per type, pools that stalled, inflight over time.</summary>
internal static class ReportCommand
{
    public sealed record InflightPoint(double Seconds, long InFlight);

    public sealed record PoolSeries(long PoolId, string Name, List<InflightPoint> Inflight);

    public sealed record Report(string File, double DurationSeconds, SortedDictionary<string, long> Events,
        SortedDictionary<string, long> Providers, long CpuSamples, List<StalledPool> StalledPools, List<PoolSeries> Pools);

    public sealed record StalledPool(long PoolId, long InFlight, long Seconds, string Leaks);

    private static readonly byte[] NettraceMagic = "Nettrace"u8.ToArray();

    public static int Run(string path, bool json)
    {
        Report report = Read(path);
        if (json)
        {
            Console.WriteLine(Json.Write(report));
            return 0;
        }
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(report.File)}[/]: {report.DurationSeconds:0.###} s, {report.CpuSamples:N0} CPU samples");
        var events = new Table().Border(TableBorder.Rounded).Title(PoolEvents.Provider).AddColumn("event").AddColumn(new TableColumn("count").RightAligned());
        foreach (var (name, count) in report.Events)
            events.AddRow(name, count.ToString("N0", System.Globalization.CultureInfo.InvariantCulture));
        if (report.Events.Count == 0)
            events.AddRow("[yellow]no pool events in this trace[/]", "0");
        AnsiConsole.Write(events);

        if (report.StalledPools.Count > 0)
        {
            var stalled = new Table().Border(TableBorder.Rounded).Title("[yellow]stalled pool shutdowns[/]").AddColumn("pool").AddColumn("inflight").AddColumn("seconds").AddColumn("leaks");
            foreach (StalledPool s in report.StalledPools)
                stalled.AddRow(s.PoolId.ToString(System.Globalization.CultureInfo.InvariantCulture), s.InFlight.ToString(System.Globalization.CultureInfo.InvariantCulture), s.Seconds.ToString(System.Globalization.CultureInfo.InvariantCulture), Markup.Escape(s.Leaks));
            AnsiConsole.Write(stalled);
        }
        else
        {
            AnsiConsole.MarkupLine("no stalled pool shutdown");
        }

        foreach (PoolSeries pool in report.Pools.Where(p => p.Inflight.Count > 0))
        {
            var chart = new BarChart().Width(70).Label($"inflight pages of pool {pool.PoolId} {Markup.Escape(pool.Name)}");
            foreach (InflightPoint point in Downsample(pool.Inflight, 20))
                chart.AddItem($"{point.Seconds,7:0.0} s", point.InFlight, Color.Blue);
            AnsiConsole.Write(chart);
        }
        return 0;
    }

    private static IEnumerable<InflightPoint> Downsample(List<InflightPoint> points, int max)
    {
        if (points.Count <= max)
            return points;
        return Enumerable.Range(0, max).Select(i => points[(int)((long)i * (points.Count - 1) / (max - 1))]);
    }

    public static Report Read(string path)
    {
        if (!File.Exists(path))
            throw new PoolStatException($"error: no such file: {path}");
        using (var probe = File.OpenRead(path))
        {
            Span<byte> head = stackalloc byte[8];
            if (probe.ReadAtLeast(head, 8, throwOnEndOfStream: false) < 8 || !head.SequenceEqual(NettraceMagic))
                throw new PoolStatException($"error: {path} is not a trace: a .nettrace file (from dotnet-trace or PoolStat trace) starts with 'Nettrace'.");
        }

        var events = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var providers = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var stalled = new List<StalledPool>();
        var pools = new Dictionary<long, PoolSeries>();
        long samples = 0;
        double duration;
        try
        {
            using var source = new EventPipeEventSource(path);
            source.Dynamic.All += e => Count(e, events, providers, stalled, pools);
            source.AllEvents += e =>
            {
                if (e.ProviderName == "Microsoft-DotNETCore-SampleProfiler")
                    samples++;
            };
            source.Process();
            duration = (source.SessionEndTime - source.SessionStartTime).TotalSeconds;
        }
        catch (Exception e) when (e is not PoolStatException)
        {
            throw new PoolStatException($"error: {path} could not be read as a trace: {e.Message}");
        }
        return new Report(Path.GetFileName(path), Math.Max(0, duration), events, providers, samples, stalled,
            pools.Values.OrderBy(p => p.PoolId).ToList());
    }

    private static void Count(TraceEvent e, SortedDictionary<string, long> events, SortedDictionary<string, long> providers,
        List<StalledPool> stalled, Dictionary<long, PoolSeries> pools)
    {
        providers[e.ProviderName] = providers.GetValueOrDefault(e.ProviderName) + 1;
        if (e.ProviderName != PoolEvents.Provider)
            return;
        string name = PoolEvents.NameOf((int)e.ID, e.EventName);
        events[name] = events.GetValueOrDefault(name) + 1;
        switch ((int)e.ID)
        {
            case 7:
                stalled.Add(new StalledPool(PoolSnapshot.Long(e, "poolId"), PoolSnapshot.Long(e, "inflight"),
                    PoolSnapshot.Long(e, "seconds"), e.PayloadByName("leaks") as string ?? ""));
                break;
            case PoolEvents.PoolStatsId:
                PoolSnapshot s = PoolSnapshot.FromEvent(e);
                Series(pools, s.Id, s.Name).Inflight.Add(new InflightPoint(Math.Round(e.TimeStampRelativeMSec / 1000, 3), s.InFlight));
                break;
            case 3:
                long id = PoolSnapshot.Long(e, "poolId");
                Series(pools, id, null).Inflight.Add(new InflightPoint(Math.Round(e.TimeStampRelativeMSec / 1000, 3), PoolSnapshot.Long(e, "inflight")));
                break;
            case 1:
                Series(pools, PoolSnapshot.Long(e, "poolId"), e.PayloadByName("name") as string);
                break;
        }
    }

    private static PoolSeries Series(Dictionary<long, PoolSeries> pools, long id, string? name)
    {
        if (!pools.TryGetValue(id, out PoolSeries? series))
            pools[id] = series = new PoolSeries(id, name ?? "", new List<InflightPoint>());
        else if (name != null && series.Name.Length == 0)
            pools[id] = series = series with { Name = name };
        return series;
    }
}
