using System.CommandLine;
using System.Globalization;

namespace UnmanagedPool.Stress;

/// <summary>
/// Command line of the stress harness, e.g.
/// <c>dotnet run -c Release --project perf/UnmanagedPool.Stress -- --threads 2 --duration 20s --seed 1 --fault-rate 0.01</c>.
/// Exit code 0 when every invariant held, 1 on a violation, 2 on a usage error.
/// </summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args) => Run(args, Console.Out);

    /// <summary>
    /// Parses <paramref name="args"/> and runs the harness, writing to <paramref name="output"/>. A test passes
    /// <paramref name="poolFactory"/> to run the harness against another pool.
    /// </summary>
    public static int Run(string[] args, TextWriter output, Func<StressPoolContext, IStressPool>? poolFactory = null)
    {
        var threads = new Option<int>("--threads", "-t") { Description = "Worker threads, each the consumer of its own pool.", DefaultValueFactory = _ => 2 };
        var duration = new Option<string>("--duration", "-d") { Description = "How long to run: 500ms, 20s, 10m, 1h.", DefaultValueFactory = _ => "10s" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of every random generator.", DefaultValueFactory = _ => 1UL };
        var mix = new Option<string>("--mix") { Description = "Operations and weights: all, or e.g. alloc=30,put=30,direct=20,bulk=4,frag,packet,cross-thread-put=10,dispose=0.02.", DefaultValueFactory = _ => "all" };
        var faultRate = new Option<double>("--fault-rate") { Description = "Probability that one page allocation from the provider fails (0..1).", DefaultValueFactory = _ => 0.0 };
        var order = new Option<int>("--order") { Description = "Allocation order of the pools (0..10).", DefaultValueFactory = _ => 0 };
        var maxHeld = new Option<int>("--max-held") { Description = "Most pages a worker holds at once.", DefaultValueFactory = _ => 512 };
        var progress = new Option<string?>("--progress") { Description = "Interval of the progress line (0 for none); default 1s, or 10s for runs over a minute." };
        var keepGoing = new Option<bool>("--keep-going") { Description = "Run to the end after a violation instead of stopping at the first." };
        var json = new Option<string?>("--json") { Description = "Also write a JSON summary to this file." };

        var root = new RootCommand("Multi-threaded stress and soak harness for UnmanagedPool's PagePool: owner cookies, an ownership bitmap, fault injection, invariant checks.")
        {
            threads, duration, seed, mix, faultRate, order, maxHeld, progress, keepGoing, json,
        };
        int exitCode = 0;
        root.SetAction(parse =>
        {
            var notes = new List<string>();
            var options = new StressOptions();
            try
            {
                options.Threads = parse.GetValue(threads);
                options.Duration = StressOptions.ParseDuration(parse.GetValue(duration)!);
                options.Seed = parse.GetValue(seed);
                options.Mix = StressOptions.ParseMix(parse.GetValue(mix)!, notes);
                options.FaultRate = parse.GetValue(faultRate);
                options.Order = parse.GetValue(order);
                options.MaxHeld = parse.GetValue(maxHeld);
                string? p = parse.GetValue(progress);
                options.ProgressInterval = p == null
                    ? (options.Duration > TimeSpan.FromMinutes(1) ? TimeSpan.FromSeconds(10) : TimeSpan.FromSeconds(1))
                    : p.Trim() == "0" ? TimeSpan.Zero : StressOptions.ParseDuration(p);
                options.KeepGoing = parse.GetValue(keepGoing);
                options.JsonPath = parse.GetValue(json);
                if (options.Threads < 1 || options.Threads > 1024)
                    throw new FormatException("--threads must be 1..1024.");
                if (!(options.FaultRate >= 0 && options.FaultRate < 1))
                    throw new FormatException("--fault-rate must be in [0, 1).");
                if (options.Order is < 0 or > 10)
                    throw new FormatException("--order must be 0..10.");
                if (options.MaxHeld < 1)
                    throw new FormatException("--max-held must be positive.");
            }
            catch (FormatException e)
            {
                output.WriteLine("error: " + e.Message);
                exitCode = 2;
                return;
            }
            foreach (string note in notes)
                output.WriteLine("note: " + note);
            exitCode = new StressRun(options, output, poolFactory).Execute();
        });
        ParseResult result = root.Parse(args);
        if (result.Errors.Count > 0)
        {
            foreach (var error in result.Errors)
                output.WriteLine("error: " + error.Message);
            return 2;
        }
        int rc = result.Invoke(new InvocationConfiguration { Output = output, Error = output });
        return rc != 0 ? rc : exitCode;
    }
}
