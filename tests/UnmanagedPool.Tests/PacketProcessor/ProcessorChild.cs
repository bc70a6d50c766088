using System.Diagnostics;
using System.Text;

namespace UnmanagedPool.Tests.PacketProcessor;

/// <summary>
/// The packet processor started as a process of its own (<c>dotnet PacketProcessor.dll ARGS</c>), for the tests
/// that signal it: its stdout and stderr are collected, and <see cref="WaitForProgress"/> waits for its first
/// progress line. Killed on Dispose if still running.
/// </summary>
internal sealed class ProcessorChild : IDisposable
{
    private readonly StringBuilder _output = new();
    private readonly ManualResetEventSlim _started = new();

    public ProcessorChild(params string[] args)
    {
        // A process started in the background by a non-interactive shell inherits SIGINT ignored, and the runtime
        // then never delivers it: start the tool through env with the default dispositions restored (env execs,
        // so the pid is the tool's), where this env can.
        bool viaEnv = EnvRestoresSignals();
        var psi = new ProcessStartInfo(viaEnv ? "env" : "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        if (viaEnv)
        {
            psi.ArgumentList.Add("--default-signal=INT,TERM");
            psi.ArgumentList.Add("dotnet");
        }
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "PacketProcessor.dll"));
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        Process = System.Diagnostics.Process.Start(psi)!;
        Process.OutputDataReceived += (_, e) =>
        {
            lock (_output)
                _output.AppendLine(e.Data);
            if (e.Data?.StartsWith("[", StringComparison.Ordinal) == true)
                _started.Set();
        };
        Process.ErrorDataReceived += (_, e) =>
        {
            lock (_output)
                _output.AppendLine("stderr: " + e.Data);
        };
        Process.BeginOutputReadLine();
        Process.BeginErrorReadLine();
    }

    public Process Process { get; }

    /// <summary>What the processor printed so far, stderr lines marked.</summary>
    public string Output
    {
        get
        {
            lock (_output)
                return _output.ToString();
        }
    }

    /// <summary>Whether a progress line came within <paramref name="timeout"/>.</summary>
    public bool WaitForProgress(TimeSpan timeout) => _started.Wait(timeout);

    /// <summary>Sends SIG<paramref name="signal"/> (INT, TERM, KILL) with kill(1).</summary>
    public void Signal(string signal)
    {
        using var kill = System.Diagnostics.Process.Start("kill", $"-{signal} {Process.Id}");
        kill.WaitForExit();
    }

    public void Dispose()
    {
        if (!Process.HasExited)
            Process.Kill(entireProcessTree: true);
        Process.Dispose();
        _started.Dispose();
    }

    private static bool EnvRestoresSignals()
    {
        try
        {
            var psi = new ProcessStartInfo("env") { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add("--default-signal=INT,TERM");
            psi.ArgumentList.Add("true");
            using var p = System.Diagnostics.Process.Start(psi)!;
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }
}
