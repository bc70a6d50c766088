using System.Diagnostics;

namespace UnmanagedPool.Tests.PacketProcessor;

public class SignalTests
{
    [Theory]
    [InlineData("INT")]
    [InlineData("TERM")]
    public void A_signal_stops_the_tool_cleanly_and_the_summary_still_shows_inflight_zero(string signal)
    {
        if (!OperatingSystem.IsLinux())
            return;
        string dll = Path.Combine(AppContext.BaseDirectory, "PacketProcessor.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { dll, "--program", "count", "--queues", "2", "--duration", "1m" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = new System.Text.StringBuilder();
        var started = new ManualResetEventSlim();
        p.OutputDataReceived += (_, e) =>
        {
            lock (output)
                output.AppendLine(e.Data);
            if (e.Data?.StartsWith("[", StringComparison.Ordinal) == true)
                started.Set();
        };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        try
        {
            Assert.True(started.Wait(TimeSpan.FromSeconds(30)), "No progress line.");
            using (var kill = Process.Start("kill", $"-{signal} {p.Id}"))
                kill.WaitForExit();
            Assert.True(p.WaitForExit(30_000), "The tool did not stop.");
            p.WaitForExit();
            string text;
            lock (output)
                text = output.ToString();
            Assert.Equal(0, p.ExitCode);
            Assert.Contains("Interrupted after", text);
            Assert.Contains("InFlight 0 on every queue", text);
        }
        finally
        {
            if (!p.HasExited)
                p.Kill(entireProcessTree: true);
        }
    }
}
