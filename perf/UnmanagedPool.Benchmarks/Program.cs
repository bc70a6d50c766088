using BenchmarkDotNet.Running;

namespace UnmanagedPool.Benchmarks;

/// <summary>Entry point: <c>dotnet run -c Release --project perf/UnmanagedPool.Benchmarks -- --filter '*'</c>.</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
