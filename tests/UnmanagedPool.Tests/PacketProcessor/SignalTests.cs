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
        // A process started in the background by a non-interactive shell inherits SIGINT ignored, and the runtime
        // then never delivers it: start the tool through env with the default disposition restored (env execs, so
        // the pid is the tool's), where this env can.
        bool viaEnv = EnvRestoresSignals();
        var psi = new ProcessStartInfo(viaEnv ? "env" : "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        if (viaEnv)
        {
            psi.ArgumentList.Add("--default-signal=INT,TERM");
            psi.ArgumentList.Add("dotnet");
        }
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
        p.ErrorDataReceived += (_, e) =>
        {
            lock (output)
                output.AppendLine("stderr: " + e.Data);
        };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        try
        {
            Assert.True(started.Wait(TimeSpan.FromSeconds(30)), "No progress line.");
            using (var kill = Process.Start("kill", $"-{signal} {p.Id}"))
                kill.WaitForExit();
            if (!p.WaitForExit(30_000))
            {
                // Whether progress lines went on (the signal was not handled) or stopped (the shutdown hangs).
                string sofar;
                lock (output)
                    sofar = output.ToString();
                Assert.Fail($"The tool did not stop within 30 s of SIG{signal}. Its output:\n{sofar}");
            }
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

    private static bool EnvRestoresSignals()
    {
        try
        {
            var psi = new ProcessStartInfo("env") { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add("--default-signal=INT,TERM");
            psi.ArgumentList.Add("true");
            using var p = Process.Start(psi)!;
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }
}
