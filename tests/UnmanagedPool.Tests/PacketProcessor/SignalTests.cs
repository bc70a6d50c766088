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
        using var child = new ProcessorChild("--program", "count", "--queues", "2", "--duration", "1m");
        Process p = child.Process;
        Assert.True(child.WaitForProgress(TimeSpan.FromSeconds(30)), "No progress line.");
        child.Signal(signal);
        // Whether progress lines went on (the signal was not handled) or stopped (the shutdown hangs).
        Assert.True(p.WaitForExit(30_000), $"The tool did not stop within 30 s of SIG{signal}. Its output:\n{child.Output}");
        p.WaitForExit();
        string text = child.Output;
        Assert.Equal(0, p.ExitCode);
        Assert.Contains("Interrupted after", text);
        Assert.Contains("InFlight 0 on every queue", text);
    }
}
