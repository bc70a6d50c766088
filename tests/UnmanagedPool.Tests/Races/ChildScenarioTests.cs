using System.Diagnostics;
using UnmanagedPool.Tests.Observability;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// Lifecycle races whose failure ends the process (an access violation, an exception on a timer thread): each runs
/// in a child process (tests/PoolLoadChild <c>--race NAME</c>, see its RaceScenarios) so a failure fails the test
/// instead of the test host.
/// </summary>
public class ChildScenarioTests
{
    private static (int ExitCode, string Output) RunChild(string scenario)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(ChildProcesses.ChildDll);
        psi.ArgumentList.Add("--race");
        psi.ArgumentList.Add(scenario);
        using Process p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(90_000))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit(10_000);
            return (-1, "timed out after 90 s\n" + stdout.Result + stderr.Result);
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    [Theory]
    [InlineData("idle-trim-unmap-throws")]    // issue 18 case 2
    [InlineData("from-address-vs-dispose")]   // issue 18 case 3
    [InlineData("stale-ref-packet-free")]     // issue 18 case 4
    public void The_scenario_is_handled_without_ending_the_process(string scenario)
    {
        (int exitCode, string output) = RunChild(scenario);
        Assert.True(exitCode == 0 && output.Contains("ok:"), $"exit code {exitCode}:\n{output}");
    }
}
