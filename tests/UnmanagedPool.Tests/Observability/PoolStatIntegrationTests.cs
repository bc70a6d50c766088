using System.Text.Json;

namespace UnmanagedPool.Tests.Observability;

/// <summary>PoolStat attached to a child process running pools under load.</summary>
public class PoolStatIntegrationTests
{
    [Fact]
    public void Show_once_as_json_reads_non_zero_and_consistent_counters_from_a_process_under_load()
    {
        using var child = new ChildProcesses.Child("60");
        var result = ChildProcesses.PoolStat("show", child.Pid.ToString(), "--once", "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);

        using var doc = JsonDocument.Parse(result.Stdout);
        Assert.Equal(child.Pid, doc.RootElement.GetProperty("pid").GetInt32());
        JsonElement pool = doc.RootElement.GetProperty("pools").EnumerateArray()
            .Single(p => p.GetProperty("name").GetString() == "load-child");
        long Get(string name) => pool.GetProperty(name).GetInt64();

        Assert.True(Get("allocFast") > 0);
        Assert.True(Get("allocSlow") > 0);
        Assert.True(Get("recycleCached") > 0);
        Assert.True(Get("recycleRing") > 0);
        Assert.True(Get("hold") > 0);
        Assert.True(Get("release") > 0);
        Assert.True(Get("inFlight") > 0);
        Assert.Equal(4096, Get("bufferSize"));
        Assert.Equal(Get("inFlight"), Get("hold") - Get("release"));
        // Every recycle returns a page some allocation handed out (a refill serves one page, its other pages
        // are then counted as fast; a slow bulk serves one page the same way).
        long allocations = Get("allocFast") + Get("allocSlow") + Get("allocSlowHighOrder") + Get("allocRefill");
        long recycles = Get("recycleCached") + Get("recycleRing");
        Assert.True(allocations >= recycles, $"allocations {allocations} < recycles {recycles}");
    }

    [Fact]
    public void Trace_for_two_seconds_records_state_hold_state_release_and_release_events()
    {
        using var child = new ChildProcesses.Child("60");
        string file = Path.Combine(Path.GetTempPath(), $"poolstat-{Guid.NewGuid():N}.nettrace");
        try
        {
            var trace = ChildProcesses.PoolStat("trace", child.Pid.ToString(), "--duration", "2s", "-o", file, "--quiet");
            Assert.True(trace.ExitCode == 0, trace.Stderr);
            Assert.True(new FileInfo(file).Length > 0);

            var report = ChildProcesses.PoolStat("report", file, "--json");
            Assert.True(report.ExitCode == 0, report.Stderr);
            using var doc = JsonDocument.Parse(report.Stdout);
            JsonElement events = doc.RootElement.GetProperty("events");
            Assert.True(events.GetProperty("StateHold").GetInt64() > 0);
            Assert.True(events.GetProperty("StateRelease").GetInt64() > 0);
            Assert.True(events.GetProperty("Release").GetInt64() > 0);
            Assert.True(events.GetProperty("PoolStats").GetInt64() > 0);
            Assert.True(doc.RootElement.GetProperty("cpuSamples").GetInt64() > 0);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void Show_on_a_pid_that_does_not_exist_fails_with_a_clear_message()
    {
        var result = ChildProcesses.PoolStat("show", "2147483000", "--once");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("no process with id 2147483000", result.Stderr);
    }

    [Fact]
    public void Show_on_a_dotnet_process_without_the_library_fails_with_a_clear_message()
    {
        if (!OperatingSystem.IsLinux())
            return; // the library check reads /proc/PID/maps
        using var child = new ChildProcesses.Child("--idle", "60");
        var result = ChildProcesses.PoolStat("show", child.Pid.ToString(), "--once", "--json");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("has not loaded UnmanagedPool.dll", result.Stderr);
    }

    [Fact]
    public void Report_on_a_file_that_is_not_a_trace_fails_with_a_clear_message()
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "this is not a trace\n");
            var result = ChildProcesses.PoolStat("report", file);
            Assert.Equal(1, result.ExitCode);
            Assert.Contains("is not a trace", result.Stderr);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void List_shows_a_process_that_runs_a_pool()
    {
        using var child = new ChildProcesses.Child("60");
        var result = ChildProcesses.PoolStat("list", "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        using var doc = JsonDocument.Parse(result.Stdout);
        Assert.Contains(doc.RootElement.EnumerateArray(), e => e.GetProperty("pid").GetInt32() == child.Pid && e.GetProperty("loaded").GetBoolean() != false);
    }
}
