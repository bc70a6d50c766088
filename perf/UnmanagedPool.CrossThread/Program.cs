using System.CommandLine;

namespace UnmanagedPool.CrossThread;

/// <summary>
/// Command line of the cross-thread measuring program, e.g.
/// <c>dotnet run -c Release --project perf/UnmanagedPool.CrossThread -- --json</c>.
/// Exit code 0 after a run, 1 when a pool method allocated managed memory (figures written all the same), 2 on a
/// usage error.
/// </summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args) => Run(args, Console.Out);

    /// <summary>Parses <paramref name="args"/> and runs the rounds, writing the table or the JSON object to <paramref name="output"/>.</summary>
    public static int Run(string[] args, TextWriter output)
    {
        var defaults = new CrossThreadOptions();
        var rounds = new Option<int>("--rounds", "-r") { Description = "Measured rounds; each runs every method once, in an order rotated each round.", DefaultValueFactory = _ => defaults.Rounds };
        var pages = new Option<int>("--pages", "-p") { Description = "Pages per method per round (operations, for the single-thread methods).", DefaultValueFactory = _ => defaults.Pages };
        var warmup = new Option<int>("--warmup") { Description = "Rounds run first and not counted.", DefaultValueFactory = _ => defaults.WarmupRounds };
        var warmupSeconds = new Option<double>("--warmup-seconds")
        {
            Description = "Least time the warm-up lasts when --warmup is not 0: rounds go on until both are reached, so that the runtime has moved the pool's methods to their optimized code.",
            DefaultValueFactory = _ => defaults.WarmupSeconds,
        };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (methods with median, q1, q3, ratios, per-round samples; the host state) instead of the table." };
        var methods = new Option<string?>("--methods", "-m")
        {
            Description = "Comma-separated methods to run (default: every method but the probes), e.g. PagePool,ChannelOnly, so that a "
                + "profiler or perf stat sees one method alone. Ratios are taken only to baselines that run. Names: "
                + string.Join(", ", CrossThreadOptions.AllMethods) + ".",
        };
        var pin = new Option<bool>("--pin") { Description = "Pin the consumer thread to CPU 0 and the putting thread to CPU 1 (Linux sched_setaffinity); says so when it cannot." };

        var root = new RootCommand("Cross-thread recycling of UnmanagedPool's PagePool against a ConcurrentQueue pool and the hand-off alone, all methods interleaved in one process.")
        {
            rounds, pages, warmup, warmupSeconds, json, pin, methods,
        };
        int exitCode = 0;
        root.SetAction(parse =>
        {
            var options = new CrossThreadOptions();
            try
            {
                options.Rounds = parse.GetValue(rounds);
                options.Pages = parse.GetValue(pages);
                options.WarmupRounds = parse.GetValue(warmup);
                options.WarmupSeconds = parse.GetValue(warmupSeconds);
                options.Json = parse.GetValue(json);
                options.Pin = parse.GetValue(pin);
                options.Methods = CrossThreadOptions.ParseMethods(parse.GetValue(methods));
                if (options.Rounds < 1 || options.Rounds > 1_000_000)
                    throw new FormatException("--rounds must be 1..1000000.");
                if (options.Pages < 1)
                    throw new FormatException("--pages must be positive.");
                if (options.WarmupRounds < 0)
                    throw new FormatException("--warmup must not be negative.");
                if (!(options.WarmupSeconds >= 0 && options.WarmupSeconds <= 3600))
                    throw new FormatException("--warmup-seconds must be 0..3600.");
            }
            catch (FormatException e)
            {
                output.WriteLine("error: " + e.Message);
                exitCode = 2;
                return;
            }
            exitCode = new CrossThreadRun(options, output).Execute();
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
