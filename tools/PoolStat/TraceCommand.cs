using System.Diagnostics.Tracing;
using Microsoft.Diagnostics.NETCore.Client;
using Spectre.Console;

namespace UnmanagedPool.PoolStat;

/// <summary>
/// <c>trace PID --duration 10s -o FILE.nettrace</c>: pool events (every keyword, Verbose, statistics each second)
/// plus CPU samples and the runtime events that resolve them, written as a nettrace file that
/// <c>dotnet-trace convert</c>, PerfView and speedscope open.
/// </summary>
internal static class TraceCommand
{
    /// <summary>The runtime keywords of dotnet-trace's <c>cpu-sampling</c> profile (loader, JIT, stacks, GC info).</summary>
    public const long RuntimeKeywords = 0x14C14FCCBD;

    public static IReadOnlyList<EventPipeProvider> Providers() =>
    [
        new EventPipeProvider(PoolEvents.Provider, EventLevel.Verbose, PoolEvents.AllKeywords,
            new Dictionary<string, string> { ["IntervalSec"] = "1" }),
        new EventPipeProvider("Microsoft-DotNETCore-SampleProfiler", EventLevel.Informational),
        new EventPipeProvider("Microsoft-Windows-DotNETRuntime", EventLevel.Informational, RuntimeKeywords),
    ];

    public static async Task<int> RunAsync(int pid, TimeSpan duration, string output, bool quiet, CancellationToken cancel)
    {
        var client = ProcessProbe.Attach(pid);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(output));
        if (dir != null)
            Directory.CreateDirectory(dir);
        EventPipeSession session;
        try
        {
            session = client.StartEventPipeSession(Providers(), requestRundown: true, circularBufferMB: 256);
        }
        catch (Exception e) when (e is ServerNotAvailableException or ServerErrorException or IOException or UnsupportedCommandException)
        {
            throw new PoolStatException($"error: could not start an EventPipe session in {pid}: {e.Message}");
        }
        using (session)
        {
            await using var file = new FileStream(output, FileMode.Create, FileAccess.Write, FileShare.Read);
            Task copy = session.EventStream.CopyToAsync(file, CancellationToken.None);
            if (!quiet)
                AnsiConsole.MarkupLine($"tracing process {pid} for {duration.TotalSeconds:0.###} s into [blue]{Markup.Escape(output)}[/]");
            try
            {
                await Task.WhenAny(copy, Task.Delay(duration, cancel)).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            try
            {
                await session.StopAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is ServerNotAvailableException or ServerErrorException or IOException or TimeoutException)
            {
                // The process exited during the trace: what was streamed is in the file.
            }
            await copy.ConfigureAwait(false);
            if (!quiet)
                AnsiConsole.MarkupLine($"wrote {file.Length:N0} bytes; read it with [blue]PoolStat report {Markup.Escape(output)}[/] or [blue]dotnet-trace convert --format speedscope {Markup.Escape(output)}[/]");
        }
        return 0;
    }
}
