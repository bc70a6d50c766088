using System.Diagnostics;
using System.Reflection;
using System.Text;

namespace UnmanagedPool.Tests.Observability;

/// <summary>Starts the load child (tests/PoolLoadChild) and PoolStat (tools/PoolStat) as separate processes.</summary>
internal static class ChildProcesses
{
    private static readonly Lazy<string> s_repoRoot = new(FindRepoRoot);

    public static string Configuration =>
        typeof(ChildProcesses).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "Configuration")?.Value ?? "Release";

    public static string ChildDll => Built("tests/PoolLoadChild", "PoolLoadChild.dll");

    public static string PoolStatDll => Built("tools/PoolStat", "PoolStat.dll");

    private static string Built(string project, string dll)
    {
        string path = Path.Combine(s_repoRoot.Value, project, "bin", Configuration, "net10.0", dll);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{dll} is not built (the test project builds it through a project reference).", path);
        return path;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "UnmanagedPool.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException("UnmanagedPool.sln not found above " + AppContext.BaseDirectory);
    }

    /// <summary>A running load child; killed on dispose.</summary>
    public sealed class Child : IDisposable
    {
        private readonly Process _process;

        public int Pid => _process.Id;

        public Child(params string[] args)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
            psi.ArgumentList.Add(ChildDll);
            foreach (string a in args)
                psi.ArgumentList.Add(a);
            _process = Process.Start(psi)!;
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            string? line;
            while ((line = _process.StandardOutput.ReadLine()) != null && line != "ready")
            {
                if (DateTime.UtcNow > deadline)
                    break;
            }
            if (line != "ready")
                throw new InvalidOperationException("the load child did not report ready");
        }

        public void Dispose()
        {
            try
            {
                if (!_process.HasExited)
                    _process.Kill(entireProcessTree: true);
                _process.WaitForExit(10_000);
            }
            catch (InvalidOperationException)
            {
            }
            _process.Dispose();
        }
    }

    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs <c>dotnet PoolStat.dll args</c> to completion.</summary>
    public static Result PoolStat(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
        };
        psi.ArgumentList.Add(PoolStatDll);
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("PoolStat " + string.Join(' ', args) + " did not finish in 60 s");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }
}
