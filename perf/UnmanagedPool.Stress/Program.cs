using System.CommandLine;
using UnmanagedPool.Tools;

namespace UnmanagedPool.Stress;

/// <summary>
/// Command line of the stress harness, e.g.
/// <c>dotnet run -c Release --project perf/UnmanagedPool.Stress -- --threads 2 --duration 20s --seed 1 --fault-rate 0.01</c>.
/// Exit code 0 when every invariant held, 1 on a violation, 2 on a usage or value error.
/// </summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>
    /// Parses <paramref name="args"/> and runs the harness, writing the report and the errors to
    /// <paramref name="output"/>. A test passes <paramref name="poolFactory"/> to run the harness against another pool.
    /// </summary>
    public static int Run(string[] args, TextWriter output, Func<StressPoolContext, IStressPool>? poolFactory = null) =>
        Run(args, output, output, poolFactory);

    /// <summary>Parses <paramref name="args"/> and runs the harness: the report on <paramref name="stdout"/>, errors on <paramref name="stderr"/>.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, Func<StressPoolContext, IStressPool>? poolFactory = null) =>
        ToolCommandLine.Invoke(BuildCommand(stdout, poolFactory), args, stdout, stderr);

    /// <summary>The root command with every option; its action runs the harness and returns the exit code.</summary>
    public static RootCommand BuildCommand(TextWriter output, Func<StressPoolContext, IStressPool>? poolFactory = null)
    {
        var threads = new Option<int>("--threads", "-t") { Description = "Worker threads, each the consumer of its own pool.", DefaultValueFactory = _ => 2 };
        var duration = ToolCommandLine.DurationOption("--duration", "How long to run", TimeSpan.FromSeconds(10), "-d");
        var seed = new Option<ulong>("--seed") { Description = "Seed of every random generator.", DefaultValueFactory = _ => 1UL };
        var mix = new Option<string>("--mix") { Description = "Operations and weights: all, or e.g. alloc=30,put=30,direct=20,bulk=4,frag,packet,cross-thread-put=10,dispose=0.02,split=4,mbuf=4 (mbuf: multi-buffer XDP buffers of a head page and fragment pages).", DefaultValueFactory = _ => "all" };
        var faultRate = new Option<double>("--fault-rate") { Description = "Probability that one page allocation from the provider fails (0..1).", DefaultValueFactory = _ => 0.0 };
        var order = new Option<int>("--order") { Description = "Allocation order of the pools (0..10).", DefaultValueFactory = _ => 0 };
        var maxHeld = new Option<int>("--max-held") { Description = "Most pages a worker holds at once.", DefaultValueFactory = _ => 512 };
        var progress = new Option<string?>("--progress") { Description = $"Interval of the progress line, a duration ({DurationParser.Syntax}) or 0 for none; default 1s, or 10s for runs over a minute." };
        var keepGoing = new Option<bool>("--keep-going") { Description = "Run to the end after a violation instead of stopping at the first." };
        var json = new Option<string?>("--json") { Description = "Also write a JSON summary to this file." };

        var root = new RootCommand(
            "Multi-threaded stress and soak harness for UnmanagedPool's PagePool: owner cookies, an ownership bitmap, fault injection, invariant checks.\n" +
            "Exit codes: 0 every invariant held; 1 a violation; 2 usage or value error.")
        {
            threads, duration, seed, mix, faultRate, order, maxHeld, progress, keepGoing, json,
        };
        root.SetAction(parse =>
        {
            if (parse.GetValue(threads) is < 1 or > 1024)
                throw ToolException.Usage("--threads must be 1..1024.");
            if (!(parse.GetValue(faultRate) is >= 0 and < 1))
                throw ToolException.Usage("--fault-rate must be in [0, 1).");
            if (parse.GetValue(order) is < 0 or > 10)
                throw ToolException.Usage("--order must be 0..10.");
            if (parse.GetValue(maxHeld) < 1)
                throw ToolException.Usage("--max-held must be positive.");
            if (parse.GetValue(progress) is { } pg && pg.Trim() != "0" && !DurationParser.TryParse(pg, out _))
                throw ToolException.Usage($"--progress: {DurationParser.NotADuration(pg)}");
            var notes = new List<string>();
            var options = new StressOptions
            {
                Threads = parse.GetValue(threads),
                Duration = parse.GetValue(duration),
                Seed = parse.GetValue(seed),
                FaultRate = parse.GetValue(faultRate),
                Order = parse.GetValue(order),
                MaxHeld = parse.GetValue(maxHeld),
                KeepGoing = parse.GetValue(keepGoing),
                JsonPath = parse.GetValue(json),
            };
            try
            {
                options.Mix = StressOptions.ParseMix(parse.GetValue(mix)!, notes);
            }
            catch (FormatException e)
            {
                throw ToolException.Usage(e.Message);
            }
            string? p = parse.GetValue(progress);
            options.ProgressInterval = p == null
                ? (options.Duration > TimeSpan.FromMinutes(1) ? TimeSpan.FromSeconds(10) : TimeSpan.FromSeconds(1))
                : p.Trim() == "0" ? TimeSpan.Zero : DurationParser.Parse(p);
            foreach (string note in notes)
                output.WriteLine("note: " + note);
            return new StressRun(options, output, poolFactory).Execute();
        });
        return root;
    }
}
