using System.CommandLine;
using UnmanagedPool.Tools;

namespace UnmanagedPool.PoolStat;

/// <summary>
/// PoolStat: inspects the page pools of a running .NET process, as <c>ethtool -S</c> and netlink
/// <c>page-pool-get</c> do for the kernel's. Attaches with the diagnostics client (EventPipe).
/// </summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args) => ToolCommandLine.Invoke(BuildCommand(), args, Console.Out, Console.Error);

    /// <summary>The root command with its four verbs (also used by tests, which parse without running).</summary>
    public static RootCommand BuildCommand()
    {
        var root = new RootCommand(
            "Inspect the UnmanagedPool page pools of running .NET processes.\n" +
            "Exit codes: 0 done; 1 no such process, not a .NET process with the library, no statistics, or an unreadable trace; 2 usage or value error.");

        var all = new Option<bool>("--all") { Description = "List every .NET process, with or without the library." };
        var listJson = new Option<bool>("--json") { Description = "Write JSON." };
        var list = new Command("list", "List .NET processes that have UnmanagedPool loaded.") { all, listJson };
        list.SetAction(r => ListCommand.Run(r.GetValue(all), r.GetValue(listJson)));
        root.Subcommands.Add(list);

        var showPid = new Argument<int>("pid") { Description = "Process id." };
        var once = new Option<bool>("--once") { Description = "Print one snapshot and exit." };
        var showJson = new Option<bool>("--json") { Description = "Write JSON (one object per snapshot)." };
        var interval = ToolCommandLine.DurationOption("--interval", "Time between refreshes, 100ms..1h", TimeSpan.FromSeconds(1));
        var show = new Command("show", "Show every pool's counters, refreshed each second (ethtool -S / page-pool-get).") { showPid, once, showJson, interval };
        show.SetAction((r, ct) => ShowCommand.RunAsync(r.GetValue(showPid), r.GetValue(once), r.GetValue(showJson), Math.Clamp(r.GetValue(interval).TotalSeconds, 0.1, 3600), ct));
        root.Subcommands.Add(show);

        var tracePid = new Argument<int>("pid") { Description = "Process id." };
        var duration = ToolCommandLine.DurationOption("--duration", "How long to trace", TimeSpan.FromSeconds(10));
        var output = new Option<string>("--output", "-o") { Description = "The .nettrace file to write.", DefaultValueFactory = _ => "pagepool.nettrace" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Print nothing on success." };
        var trace = new Command("trace", "Record pool events and CPU samples into a .nettrace file.") { tracePid, duration, output, quiet };
        trace.SetAction((r, ct) => TraceCommand.RunAsync(r.GetValue(tracePid), r.GetValue(duration), r.GetValue(output)!, r.GetValue(quiet), ct));
        root.Subcommands.Add(trace);

        var file = new Argument<string>("file") { Description = "A .nettrace file." };
        var reportJson = new Option<bool>("--json") { Description = "Write JSON." };
        var report = new Command("report", "Summarise a trace: events per type, stalled pools, inflight over time.") { file, reportJson };
        report.SetAction(r => ReportCommand.Run(r.GetValue(file)!, r.GetValue(reportJson)));
        root.Subcommands.Add(report);
        return root;
    }
}
