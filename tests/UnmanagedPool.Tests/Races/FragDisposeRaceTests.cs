using System.Diagnostics;
using UnmanagedPool.Tests.Observability;

namespace UnmanagedPool.Tests.Races;

/// <summary>
/// A fragment piece put from another thread while the consumer disposes the pool. Run in a child process: when the
/// put reads the page's descriptor after the step that lets Dispose free the page, the pool and the region, the
/// read hits unmapped memory and ends the process.
/// </summary>
public class FragDisposeRaceTests
{
    [Fact]
    public void A_piece_put_from_another_thread_that_Dispose_overtakes_after_the_atomic_drop_completes_without_touching_the_freed_page()
    {
        (int exitCode, string output) = RaceChild.Run("frag-put-dispose");
        Assert.True(exitCode == 0, $"child exit code {exitCode}: {output}");
        Assert.Contains("ok pool freed, put completed", output);
    }
}

/// <summary>Runs <c>dotnet PoolLoadChild.dll --race NAME</c> to completion (bounded) and returns its exit code and output.</summary>
internal static class RaceChild
{
    public static (int ExitCode, string Output) Run(string race)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(ChildProcesses.ChildDll);
        psi.ArgumentList.Add("--race");
        psi.ArgumentList.Add(race);
        // No crash dump: an ending child is an expected failure mode here, not something to keep.
        psi.Environment["DOTNET_DbgEnableMiniDump"] = "0";
        using Process child = Process.Start(psi)!;
        Task<string> stdout = child.StandardOutput.ReadToEndAsync();
        Task<string> stderr = child.StandardError.ReadToEndAsync();
        if (!child.WaitForExit(90_000))
        {
            child.Kill(entireProcessTree: true);
            child.WaitForExit(10_000);
            return (-1, "timed out after 90 s\n" + stdout.Result + stderr.Result);
        }
        child.WaitForExit();
        return (child.ExitCode, stdout.Result + stderr.Result);
    }
}
