using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using UnmanagedPool.Tools;

namespace PacketProcessor.Bench;

/// <summary>
/// Throughput of the synthetic driver: drop and redirect, 1 and 2 queues, PagePool against ArrayPool&lt;byte&gt;.Shared,
/// in one run. Each cell runs the processor as its own process, ROUNDS times for DURATION each, interleaved (pagepool,
/// arraypool, pagepool, ...) so that load from other processes hits both alike; the markdown table on stdout shows
/// the median Mpps, the runs go to stderr as they finish.
/// <c>dotnet run -c Release --project perf/PacketProcessor.Bench -- --duration 3s --rounds 3</c>.
/// </summary>
public static class Program
{
    private static readonly (string Program, int Queues, bool XdpFrames)[] Configs =
    [
        ("drop", 1, true), ("drop", 2, true),
        ("redirect", 1, true), ("redirect", 2, true),
        ("redirect", 1, false), ("redirect", 2, false),
    ];

    /// <summary>Entry point.</summary>
    public static int Main(string[] args) => ToolCommandLine.Invoke(BuildCommand(Console.Out, Console.Error), args, Console.Out, Console.Error);

    /// <summary>The command line: <c>--duration</c> per run and <c>--rounds</c>.</summary>
    public static RootCommand BuildCommand(TextWriter stdout, TextWriter stderr)
    {
        var duration = ToolCommandLine.DurationOption("--duration", "How long each run lasts", TimeSpan.FromSeconds(3), "-t");
        var rounds = new Option<int>("--rounds", "-r") { Description = "Runs per cell; the table shows their median.", DefaultValueFactory = _ => 3 };
        var root = new RootCommand(
            "PacketProcessor throughput, PagePool against ArrayPool<byte>.Shared: drop and redirect on 1 and 2 queues, interleaved rounds, a markdown table of medians.\n" +
            "Exit codes: 0 done; 1 a run failed or left buffers in flight; 2 usage or value error.")
        {
            duration, rounds,
        };
        root.SetAction(r =>
        {
            int n = r.GetValue(rounds);
            if (n is < 1 or > 100)
                throw ToolException.Usage("--rounds must be 1..100.");
            return Run(r.GetValue(duration), n, stdout, stderr);
        });
        return root;
    }

    private static int Run(TimeSpan perRun, int rounds, TextWriter stdout, TextWriter stderr)
    {
        string processor = Path.Combine(AppContext.BaseDirectory, "PacketProcessor.dll");
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
        double[] load = File.Exists("/proc/loadavg")
            ? [.. File.ReadAllText("/proc/loadavg").Split(' ').Take(3).Select(s => double.Parse(s, CultureInfo.InvariantCulture))]
            : [];
        stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"load average: {string.Join(' ', load)}, {Environment.ProcessorCount} CPUs, {perRun.TotalSeconds:0.###}s x {rounds} rounds per cell"));
        var runs = new Dictionary<BenchCell, List<double>>();
        for (int round = 1; round <= rounds; round++)
        {
            foreach (var (program, queues, frames) in Configs)
            {
                foreach (string pool in new[] { "pagepool", "arraypool" })
                {
                    if (pool == "arraypool" && !frames)
                        continue;
                    double mpps = RunOnce(dotnet, processor, program, queues, pool, frames, perRun);
                    var cell = new BenchCell(program, queues, frames, pool);
                    if (!runs.TryGetValue(cell, out List<double>? list))
                        runs[cell] = list = [];
                    list.Add(mpps);
                    stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  round {round}: {program} q={queues} {pool} xdp-frames={(frames ? "true" : "false")}: {mpps} Mpps"));
                }
            }
        }
        stdout.Write(BenchTable.Format(runs));
        return ExitCodes.Ok;
    }

    // One process per run, so that no run inherits another's JIT state, heap or threads.
    private static double RunOnce(string dotnet, string processor, string program, int queues, string pool, bool frames, TimeSpan perRun)
    {
        var psi = new ProcessStartInfo(dotnet)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { processor, "--program", program, "--queues", queues.ToString(CultureInfo.InvariantCulture), "--pool", pool,
                     "--xdp-frames", frames ? "true" : "false", "--duration", $"{perRun.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture)}ms", "--json", "--quiet" })
            psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi) ?? throw new ToolException($"could not start {dotnet}.");
        Task<string> errors = p.StandardError.ReadToEndAsync();
        string json = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        string what = $"{program} q={queues} {pool} xdp-frames={(frames ? "true" : "false")}";
        if (p.ExitCode != 0)
            throw new ToolException($"{what}: PacketProcessor exited with {p.ExitCode}: {errors.Result.Trim()}");
        using JsonDocument doc = JsonDocument.Parse(json);
        long inFlight = doc.RootElement.GetProperty("inFlight").GetInt64();
        if (inFlight != 0)
            throw new ToolException($"{what}: inFlight {inFlight} at the end.");
        return doc.RootElement.GetProperty("mpps").GetDouble();
    }
}
