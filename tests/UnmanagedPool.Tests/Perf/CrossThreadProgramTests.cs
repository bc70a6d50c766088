using System.Diagnostics;
using System.Reflection;
using System.Text;
using System.Text.Json;

namespace UnmanagedPool.Tests.Perf;

/// <summary>
/// Runs perf/UnmanagedPool.CrossThread as users run it (<c>dotnet UnmanagedPool.CrossThread.dll</c>, built through
/// the test project's reference) for two tiny rounds and checks its JSON.
/// </summary>
public class CrossThreadProgramTests
{
    private static readonly string[] CrossThreadMethods =
        ["ChannelOnly", "ChannelDescriptor", "ConcurrentQueuePool", "PagePool", "PagePoolBulkPut8", "PagePoolBulkPut32", "PagePoolRedirect"];

    private static readonly string[] SingleThreadMethods = ["Floor", "FastPath", "RingPath"];

    private static readonly string[] PoolMethods =
        ["PagePool", "PagePoolBulkPut8", "PagePoolBulkPut32", "PagePoolRedirect", "FastPath", "RingPath"];

    [Fact]
    public void Two_tiny_rounds_print_one_json_object_with_every_method_consistent_quartiles_unit_self_ratios_and_no_allocation_on_pool_methods()
    {
        var (rc, stdout, stderr) = RunProgram("--rounds", "2", "--pages", "20000", "--json");
        Assert.True(rc == 0, $"exit {rc}\n{stdout}\n{stderr}");
        using JsonDocument doc = JsonDocument.Parse(stdout);
        JsonElement root = doc.RootElement;
        Assert.Equal(2, root.GetProperty("rounds").GetInt32());
        Assert.Equal(20000, root.GetProperty("pages").GetInt32());

        var methods = root.GetProperty("methods").EnumerateArray().ToDictionary(m => m.GetProperty("name").GetString()!);
        Assert.Equal(CrossThreadMethods.Concat(SingleThreadMethods).Order(), methods.Keys.Order());
        foreach (var (name, m) in methods)
        {
            double median = m.GetProperty("median").GetDouble();
            double q1 = m.GetProperty("q1").GetDouble();
            double q3 = m.GetProperty("q3").GetDouble();
            Assert.True(median > 0, $"{name}: median {median}");
            Assert.True(q1 <= median && median <= q3, $"{name}: q1 {q1}, median {median}, q3 {q3}");
            Assert.Equal(2, m.GetProperty("samples").GetArrayLength());
            foreach (JsonElement s in m.GetProperty("samples").EnumerateArray())
                Assert.True(s.GetDouble() > 0, $"{name}: sample {s}");
            JsonElement ratios = m.GetProperty("ratios");
            string[] baselines = CrossThreadMethods.Contains(name) ? ["ChannelOnly", "ChannelDescriptor", "ConcurrentQueuePool"] : ["Floor"];
            foreach (string b in baselines)
                Assert.True(ratios.GetProperty(b).GetDouble() > 0, $"{name}: ratio to {b}");
            if (PoolMethods.Contains(name))
            {
                Assert.True(m.GetProperty("pool").GetBoolean(), name);
                Assert.Equal(0.0, m.GetProperty("bytesPerPage").GetDouble());
            }
        }
        Assert.Equal(1.0, methods["ChannelOnly"].GetProperty("ratios").GetProperty("ChannelOnly").GetDouble());
        Assert.Equal(1.0, methods["ConcurrentQueuePool"].GetProperty("ratios").GetProperty("ConcurrentQueuePool").GetDouble());
        Assert.Equal(1.0, methods["ChannelDescriptor"].GetProperty("ratios").GetProperty("ChannelDescriptor").GetDouble());
        Assert.Equal(1.0, methods["Floor"].GetProperty("ratios").GetProperty("Floor").GetDouble());
        Assert.Equal(methods["ChannelOnly"].GetProperty("median").GetDouble(), root.GetProperty("host").GetProperty("channelOnlyMedian").GetDouble());
    }

    [Fact]
    public void Pin_either_pins_both_threads_or_says_why_not()
    {
        var (rc, stdout, stderr) = RunProgram("--rounds", "1", "--pages", "5000", "--warmup", "1", "--json", "--pin");
        Assert.True(rc == 0, $"exit {rc}\n{stdout}\n{stderr}");
        using JsonDocument doc = JsonDocument.Parse(stdout);
        string note = doc.RootElement.GetProperty("pin").GetString()!;
        if (doc.RootElement.GetProperty("pinned").GetBoolean())
            Assert.Matches(@"CPU 0.*CPU 1", note);
        else
            Assert.Contains("not pinned", note);
        // Where this process may run on CPUs 0 and 1, sched_setaffinity to either cannot fail.
        if (OperatingSystem.IsLinux() && (Process.GetCurrentProcess().ProcessorAffinity & 3) == 3)
            Assert.True(doc.RootElement.GetProperty("pinned").GetBoolean(), note);
    }

    [Fact]
    public void A_bad_option_value_is_a_usage_error_with_exit_code_2()
    {
        var (rc, stdout, _) = RunProgram("--rounds", "0");
        Assert.Equal(2, rc);
        Assert.StartsWith("error: --rounds", stdout);
    }

    [Fact]
    public void Methods_runs_only_the_named_methods_and_takes_ratios_only_to_the_baselines_that_ran()
    {
        var (rc, stdout, stderr) = RunProgram("--rounds", "1", "--pages", "5000", "--warmup", "1", "--json",
            "--methods", "pagepool, ChannelOnly,ProbeBulkPut32CasHead,PagePool");
        Assert.True(rc == 0, $"exit {rc}\n{stdout}\n{stderr}");
        using JsonDocument doc = JsonDocument.Parse(stdout);
        var methods = doc.RootElement.GetProperty("methods").EnumerateArray().ToDictionary(m => m.GetProperty("name").GetString()!);
        Assert.Equal(["ChannelOnly", "PagePool", "ProbeBulkPut32CasHead"], methods.Keys);
        foreach (var (name, m) in methods)
        {
            JsonElement ratios = m.GetProperty("ratios");
            Assert.True(ratios.GetProperty("ChannelOnly").GetDouble() > 0, name);
            Assert.False(ratios.TryGetProperty("ConcurrentQueuePool", out _), name);
        }
        Assert.Equal(0.0, methods["ProbeBulkPut32CasHead"].GetProperty("bytesPerPage").GetDouble());
        Assert.Equal(methods["ChannelOnly"].GetProperty("median").GetDouble(), doc.RootElement.GetProperty("host").GetProperty("channelOnlyMedian").GetDouble());
    }

    [Fact]
    public void Methods_without_ChannelOnly_write_a_null_host_state()
    {
        var (rc, stdout, stderr) = RunProgram("--rounds", "1", "--pages", "5000", "--warmup", "1", "--json", "--methods", "PagePoolRedirect");
        Assert.True(rc == 0, $"exit {rc}\n{stdout}\n{stderr}");
        using JsonDocument doc = JsonDocument.Parse(stdout);
        JsonElement m = Assert.Single(doc.RootElement.GetProperty("methods").EnumerateArray());
        Assert.Equal("PagePoolRedirect", m.GetProperty("name").GetString());
        Assert.Empty(m.GetProperty("ratios").EnumerateObject());
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("host").GetProperty("channelOnlyMedian").ValueKind);
    }

    [Fact]
    public void Warmup_lasts_at_least_the_warmup_seconds_and_reports_the_rounds_it_took()
    {
        // One Floor round of 2000 operations takes microseconds: 0.3 s of warm-up is many rounds, not the one asked for.
        var (rc, stdout, stderr) = RunProgram("--rounds", "1", "--pages", "2000", "--warmup", "1", "--warmup-seconds", "0.3", "--json", "--methods", "Floor");
        Assert.True(rc == 0, $"exit {rc}\n{stdout}\n{stderr}");
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal(1, doc.RootElement.GetProperty("warmupRounds").GetInt32());
            Assert.Equal(0.3, doc.RootElement.GetProperty("warmupSeconds").GetDouble());
            Assert.True(doc.RootElement.GetProperty("warmupRoundsRun").GetInt32() > 1, stdout);
        }

        // --warmup 0 runs no warm-up at all, whatever the seconds say.
        (rc, stdout, stderr) = RunProgram("--rounds", "1", "--pages", "2000", "--warmup", "0", "--warmup-seconds", "5", "--json", "--methods", "Floor");
        Assert.True(rc == 0, $"exit {rc}\n{stdout}\n{stderr}");
        using (JsonDocument doc = JsonDocument.Parse(stdout))
            Assert.Equal(0, doc.RootElement.GetProperty("warmupRoundsRun").GetInt32());

        (rc, stdout, _) = RunProgram("--warmup-seconds", "-1");
        Assert.Equal(2, rc);
        Assert.StartsWith("error: --warmup-seconds", stdout);
    }

    [Fact]
    public void An_unknown_method_is_a_usage_error_with_exit_code_2()
    {
        var (rc, stdout, _) = RunProgram("--methods", "PagePool,NoSuchMethod");
        Assert.Equal(2, rc);
        Assert.StartsWith("error: --methods: unknown method 'NoSuchMethod'", stdout);
    }

    private static (int ExitCode, string Stdout, string Stderr) RunProgram(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
        };
        psi.ArgumentList.Add(ProgramDll());
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(180_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("UnmanagedPool.CrossThread " + string.Join(' ', args) + " did not finish in 180 s");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static string ProgramDll()
    {
        string configuration = typeof(CrossThreadProgramTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "Configuration")?.Value ?? "Release";
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (!File.Exists(Path.Combine(dir.FullName, "UnmanagedPool.sln")))
                continue;
            string path = Path.Combine(dir.FullName, "perf", "UnmanagedPool.CrossThread", "bin", configuration, "net10.0", "UnmanagedPool.CrossThread.dll");
            if (!File.Exists(path))
                throw new FileNotFoundException("UnmanagedPool.CrossThread.dll is not built (the test project builds it through a project reference).", path);
            return path;
        }
        throw new DirectoryNotFoundException("UnmanagedPool.sln not found above " + AppContext.BaseDirectory);
    }
}
