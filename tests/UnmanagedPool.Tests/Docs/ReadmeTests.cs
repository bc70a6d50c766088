namespace UnmanagedPool.Tests.Docs;

public class ReadmeTests
{
    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "UnmanagedPool.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }

    private static string Normalize(string code) =>
        string.Join('\n', code.Replace("\r", "").Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0));

    [Fact]
    public void The_readme_example_is_the_code_this_test_project_compiles()
    {
        string root = RepoRoot();
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        int section = readme.IndexOf("## Using PagePool", StringComparison.Ordinal);
        Assert.True(section >= 0, "README has no 'Using PagePool' section");
        int start = readme.IndexOf("```csharp\n", section, StringComparison.Ordinal);
        int end = readme.IndexOf("```", start + 10, StringComparison.Ordinal);
        string shown = readme[(start + 10)..end];

        string source = File.ReadAllText(Path.Combine(root, "tests", "UnmanagedPool.Tests", "Docs", "ReadmeExample.cs"));
        int b = source.IndexOf("// README:begin", StringComparison.Ordinal) + "// README:begin".Length;
        int e = source.IndexOf("// README:end", StringComparison.Ordinal);
        Assert.Equal(Normalize(source[b..e]), Normalize(shown));
    }

    [Fact]
    public void The_readme_example_runs_and_its_counters_add_up()
    {
        var stats = ReadmeExample.Run();
        Assert.Equal(1, stats.AllocSlow);
        Assert.Equal(1, stats.AllocFast);
        Assert.Equal(1, stats.RecycleCached);
        Assert.Equal(1, stats.RecycleRing);
        Assert.Equal(64, stats.InFlight);
    }
}
