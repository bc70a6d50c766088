using System.CommandLine;
using Spectre.Console;

namespace UnmanagedPool.PoolStat;

/// <summary>
/// PoolStat: inspects the page pools of a running .NET process, as <c>ethtool -S</c> and netlink
/// <c>page-pool-get</c> do for the kernel's. Attaches with the diagnostics client (EventPipe).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("Inspect the UnmanagedPool page pools of running .NET processes.");

        var all = new Option<bool>("--all") { Description = "List every .NET process, with or without the library." };
        var listJson = new Option<bool>("--json") { Description = "Write JSON." };
        var list = new Command("list", "List .NET processes that have UnmanagedPool loaded.") { all, listJson };
        list.SetAction(r => Guard(() => ListCommand.Run(r.GetValue(all), r.GetValue(listJson))));
        root.Subcommands.Add(list);

        var showPid = new Argument<int>("pid") { Description = "Process id." };
        var once = new Option<bool>("--once") { Description = "Print one snapshot and exit." };
        var showJson = new Option<bool>("--json") { Description = "Write JSON (one object per snapshot)." };
        var interval = new Option<double>("--interval") { Description = "Seconds between refreshes.", DefaultValueFactory = _ => 1.0 };
        var show = new Command("show", "Show every pool's counters, refreshed each second (ethtool -S / page-pool-get).") { showPid, once, showJson, interval };
        show.SetAction((r, ct) => GuardAsync(() => ShowCommand.RunAsync(r.GetValue(showPid), r.GetValue(once), r.GetValue(showJson), Math.Clamp(r.GetValue(interval), 0.1, 3600), ct)));
        root.Subcommands.Add(show);

        var tracePid = new Argument<int>("pid") { Description = "Process id." };
        var duration = new Option<string>("--duration") { Description = "How long to trace: 10s, 500ms, 2m or hh:mm:ss.", DefaultValueFactory = _ => "10s" };
        var output = new Option<string>("--output", "-o") { Description = "The .nettrace file to write.", DefaultValueFactory = _ => "pagepool.nettrace" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Print nothing on success." };
        var trace = new Command("trace", "Record pool events and CPU samples into a .nettrace file.") { tracePid, duration, output, quiet };
        trace.SetAction((r, ct) => GuardAsync(() => TraceCommand.RunAsync(r.GetValue(tracePid), Durations.Parse(r.GetValue(duration)!), r.GetValue(output)!, r.GetValue(quiet), ct)));
        root.Subcommands.Add(trace);

        var file = new Argument<string>("file") { Description = "A .nettrace file." };
        var reportJson = new Option<bool>("--json") { Description = "Write JSON." };
        var report = new Command("report", "Summarise a trace: events per type, stalled pools, inflight over time.") { file, reportJson };
        report.SetAction(r => Guard(() => ReportCommand.Run(r.GetValue(file)!, r.GetValue(reportJson))));
        root.Subcommands.Add(report);

        return root.Parse(args).Invoke();
    }

    private static int Guard(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (PoolStatException e)
        {
            Console.Error.WriteLine(e.Message);
            return e.ExitCode;
        }
    }

    private static async Task<int> GuardAsync(Func<Task<int>> action)
    {
        try
        {
            return await action().ConfigureAwait(false);
        }
        catch (PoolStatException e)
        {
            Console.Error.WriteLine(e.Message);
            return e.ExitCode;
        }
    }
}
