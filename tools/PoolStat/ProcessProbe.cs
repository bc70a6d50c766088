using System.Diagnostics;
using Microsoft.Diagnostics.NETCore.Client;

namespace UnmanagedPool.PoolStat;

/// <summary>Finds .NET processes and tells whether they have the UnmanagedPool library loaded.</summary>
internal static class ProcessProbe
{
    public const string LibraryFile = "UnmanagedPool.dll";

    /// <summary>PIDs of .NET processes that publish a diagnostics port.</summary>
    public static IReadOnlyList<int> PublishedProcesses() =>
        DiagnosticsClient.GetPublishedProcesses().Where(p => p != Environment.ProcessId).Order().ToList();

    /// <summary>True, false, or null when the process's mappings cannot be read (not Linux, no permission).</summary>
    public static bool? HasLibrary(int pid)
    {
        string maps = $"/proc/{pid}/maps";
        try
        {
            foreach (string line in File.ReadLines(maps))
                if (line.EndsWith("/" + LibraryFile, StringComparison.Ordinal))
                    return true;
            return false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public static string NameOf(int pid)
    {
        try
        {
            using Process p = Process.GetProcessById(pid);
            string cmdline = $"/proc/{pid}/cmdline";
            if (File.Exists(cmdline))
            {
                string[] parts = File.ReadAllText(cmdline).Split('\0', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length > 0)
                    return string.Join(' ', parts.Select(Path.GetFileName).Take(3));
            }
            return p.ProcessName;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            return "?";
        }
    }

    /// <summary>Checks that <paramref name="pid"/> is a live .NET process with the library loaded; throws a clear error otherwise.</summary>
    public static DiagnosticsClient Attach(int pid)
    {
        if (pid <= 0)
            throw new PoolStatException($"error: {pid} is not a process id.");
        try
        {
            using Process p = Process.GetProcessById(pid);
            if (p.HasExited)
                throw new PoolStatException($"error: no process with id {pid}.");
        }
        catch (ArgumentException)
        {
            throw new PoolStatException($"error: no process with id {pid}.");
        }
        if (!PublishedProcesses().Contains(pid))
            throw new PoolStatException($"error: process {pid} ({NameOf(pid)}) is not a .NET process with a diagnostics port (DOTNET_EnableDiagnostics=0?).");
        if (HasLibrary(pid) == false)
            throw new PoolStatException($"error: process {pid} ({NameOf(pid)}) has not loaded {LibraryFile}: it runs no page pool.");
        return new DiagnosticsClient(pid);
    }
}
