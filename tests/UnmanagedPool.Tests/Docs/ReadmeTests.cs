namespace UnmanagedPool.Tests.Docs;

public class ReadmeTests
{
    private static string Normalize(string code) =>
        string.Join('\n', code.Replace("\r", "").Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0));

    private static bool IsUsingDirective(string line) =>
        line.StartsWith("using ", StringComparison.Ordinal) && !line.StartsWith("using var ", StringComparison.Ordinal) &&
        line.TrimEnd().EndsWith(';');

    [Fact]
    public void The_readme_example_is_the_code_this_test_project_compiles()
    {
        string shown = Readme.PackageExample();
        string[] lines = shown.Split('\n');
        Assert.Contains("using UnmanagedPool;", lines);
        Assert.Contains("using UnmanagedPool.Native;", lines);
        Assert.DoesNotContain("unsafe", shown, StringComparison.Ordinal);
        string body = string.Join('\n', lines.Where(l => !IsUsingDirective(l)));

        string source = File.ReadAllText(Path.Combine(Readme.RepoRoot(), "tests", "UnmanagedPool.Tests", "Docs", "ReadmeExample.cs"));
        int b = source.IndexOf("// README:begin", StringComparison.Ordinal) + "// README:begin".Length;
        int e = source.IndexOf("// README:end", StringComparison.Ordinal);
        Assert.Equal(Normalize(source[b..e]), Normalize(body));
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
