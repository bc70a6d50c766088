namespace UnmanagedPool.Tests.Docs;

/// <summary>The repository's README and the library example it shows between its package-example markers.</summary>
internal static class Readme
{
    public const string ExampleBegin = "<!-- package-example:begin -->";
    public const string ExampleEnd = "<!-- package-example:end -->";

    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "UnmanagedPool.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }

    /// <summary>The C# block between the markers, exactly as shown: a whole <c>Program.cs</c>.</summary>
    public static string PackageExample()
    {
        string readme = File.ReadAllText(Path.Combine(RepoRoot(), "README.md")).Replace("\r", "");
        int begin = readme.IndexOf(ExampleBegin, StringComparison.Ordinal);
        int end = readme.IndexOf(ExampleEnd, StringComparison.Ordinal);
        if (begin < 0 || end < begin)
            throw new InvalidOperationException($"README.md has no {ExampleBegin} ... {ExampleEnd} block");
        string block = readme[(begin + ExampleBegin.Length)..end].Trim();
        const string fence = "```csharp\n";
        if (!block.StartsWith(fence, StringComparison.Ordinal) || !block.EndsWith("```", StringComparison.Ordinal))
            throw new InvalidOperationException("the package example is not one ```csharp block");
        return block[fence.Length..^3];
    }
}
