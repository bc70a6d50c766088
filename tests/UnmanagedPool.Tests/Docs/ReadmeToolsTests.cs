using System.Text.RegularExpressions;
using UnmanagedPool.Tools;

namespace UnmanagedPool.Tests.Docs;

/// <summary>The README's options table and command-line conventions say what the programs do.</summary>
public class ReadmeToolsTests
{
    private static string Readme()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "UnmanagedPool.sln")))
            dir = dir.Parent;
        return File.ReadAllText(Path.Combine(dir?.FullName ?? throw new InvalidOperationException("repository root not found"), "README.md"));
    }

    [Fact]
    public void The_processor_options_table_has_a_row_for_every_option_and_no_other()
    {
        string readme = Readme();
        int start = readme.IndexOf("| option | values | default |", StringComparison.Ordinal);
        Assert.True(start >= 0, "README has no PacketProcessor options table");
        int end = readme.IndexOf("\n\n", start, StringComparison.Ordinal);
        string table = readme[start..end];
        // A row may name two options ("`--size`, `-s` / `--mix`"): take every long name in the first cell.
        var documented = table.Split('\n').Skip(2)
            .SelectMany(row => Regex.Matches(row.Split('|')[1], "`(--[a-z-]+)`").Select(m => m.Groups[1].Value))
            .ToHashSet();
        var actual = global::PacketProcessor.Program.BuildCommand().Options
            .Select(o => o.Name).Where(n => n is not ("--help" or "--version")).ToHashSet();
        Assert.Equal(actual.Order(), documented.Order());
    }

    [Fact]
    public void The_xdp_frames_row_says_what_its_help_says()
    {
        string readme = Readme();
        string help = global::PacketProcessor.Program.BuildCommand().Options.Single(o => o.Name == "--xdp-frames").Description!;
        string row = readme.Split('\n').Single(l => l.StartsWith("| `--xdp-frames` |", StringComparison.Ordinal));
        string plain = row.Replace("`", "");
        foreach (string phrase in new[] { "--program redirect", "--pool pagepool", "Xdp.ReturnFrameBulk", "PagePool.PutPages", "the kernel's way", "--xdp-frames false" })
        {
            Assert.Contains(phrase, help);
            Assert.Contains(phrase, plain);
        }
    }

    [Fact]
    public void The_readme_lists_the_duration_forms_and_the_shared_exit_codes()
    {
        string readme = Readme();
        foreach (string form in new[] { "`10s`", "`500ms`", "`2m`", "`1h`", "`1m30s`", "`1.5s`", "`hh:mm:ss`" })
            Assert.Contains(form, readme);
        Assert.Contains($"error: --duration: '5x' is not a duration (use {DurationParser.Syntax}).", readme);
        Assert.Contains("0 done and every check held; 1 the run failed", readme);
        Assert.Contains("2 a usage or value error", readme);
    }
}
