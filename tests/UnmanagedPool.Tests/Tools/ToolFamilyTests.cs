using System.CommandLine;
using System.CommandLine.Parsing;
using UnmanagedPool.Tools;
using PoolStatProgram = UnmanagedPool.PoolStat.Program;
using ProcessorProgram = PacketProcessor.Program;
using StressProgram = UnmanagedPool.Stress.Program;

namespace UnmanagedPool.Tests.Tools;

/// <summary>
/// PacketProcessor, PoolStat and the stress harness read the same duration strings the same way and report a bad
/// value in the same style: <c>error: …</c> on stderr, nothing on stdout (no help dump), exit code 2.
/// </summary>
public class ToolFamilyTests
{
    /// <summary>Each program's command line and the arguments that set one of its durations to the text given.</summary>
    private static readonly (string Program, Func<RootCommand> Command, Func<string, string[]> Args, string Option)[] Programs =
    [
        ("PacketProcessor --duration", ProcessorProgram.BuildCommand, d => ["--duration", d], "--duration"),
        ("UnmanagedPool.Stress --duration", () => StressProgram.BuildCommand(TextWriter.Null), d => ["--duration", d], "--duration"),
        ("PoolStat trace --duration", PoolStatProgram.BuildCommand, d => ["trace", "1", "--duration", d], "--duration"),
        ("PoolStat show --interval", PoolStatProgram.BuildCommand, d => ["show", "1", "--interval", d], "--interval"),
    ];

    public static TheoryData<string, long> Strings() => new()
    {
        { "10s", 10_000 }, { "500ms", 500 }, { "2m", 120_000 }, { "1m30s", 90_000 }, { "1h", 3_600_000 }, { "1.5s", 1_500 },
        { "00:01:30", 90_000 }, { "3", 3_000 }, { "0.5", 500 },
        // Rejected by all alike (expected value -1).
        { "5x", -1 }, { "0", -1 }, { "-1s", -1 }, { "1:30", -1 }, { "soon", -1 }, { "30s1m", -1 },
    };

    [Theory]
    [MemberData(nameof(Strings))]
    public void The_three_programs_accept_and_reject_the_same_duration_strings_with_the_same_value(string text, long milliseconds)
    {
        foreach (var (program, command, args, option) in Programs)
        {
            ParseResult result = command().Parse(args(text));
            if (milliseconds < 0)
            {
                ParseError error = Assert.Single(result.Errors);
                Assert.Equal($"{option}: '{text}' is not a duration (use {DurationParser.Syntax}).", error.Message);
            }
            else
            {
                Assert.True(result.Errors.Count == 0, $"{program} {text}: {string.Join("; ", result.Errors.Select(e => e.Message))}");
                Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), result.GetValue<TimeSpan>(option));
            }
        }
    }

    [Fact]
    public void A_bad_value_gives_one_error_line_and_a_hint_on_stderr_nothing_on_stdout_and_exit_code_2()
    {
        foreach (var (program, command, args, option) in Programs)
        {
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            int rc = ToolCommandLine.Invoke(command(), args("5x"), stdout, stderr);
            Assert.Equal(ExitCodes.Usage, rc);
            Assert.Equal("", stdout.ToString());
            string[] lines = stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.Equal(2, lines.Length);
            Assert.Equal($"error: {option}: '5x' is not a duration (use {DurationParser.Syntax}).", lines[0]);
            Assert.StartsWith("Run '", lines[1]);
            Assert.EndsWith(" --help' for the options.", lines[1]);
            Assert.DoesNotContain("Options:", stderr.ToString());
        }
    }

    [Theory]
    [InlineData("PacketProcessor", "--queues", "0", "error: --queues must be 1..64 (got 0).")]
    [InlineData("UnmanagedPool.Stress", "--threads", "0", "error: --threads must be 1..1024.")]
    [InlineData("UnmanagedPool.Stress", "--mix", "alloc,teleport", "error: --mix: unknown operation 'teleport'")]
    public void A_value_refused_after_parsing_reads_like_a_parse_error(string program, string option, string value, string error)
    {
        RootCommand command = program == "PacketProcessor" ? ProcessorProgram.BuildCommand() : StressProgram.BuildCommand(TextWriter.Null);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        Assert.Equal(ExitCodes.Usage, ToolCommandLine.Invoke(command, [option, value], stdout, stderr));
        Assert.Equal("", stdout.ToString());
        string[] lines = stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(2, lines.Length);
        Assert.StartsWith(error, lines[0]);
        Assert.Equal($"Run '{command.Name} --help' for the options.", lines[1]);
    }

    [Fact]
    public void An_unknown_option_is_a_usage_error_in_each_program()
    {
        foreach (var (program, command, args, _) in Programs)
        {
            var stderr = new StringWriter();
            string[] a = [.. args("1s"), "--no-such-option"];
            Assert.Equal(ExitCodes.Usage, ToolCommandLine.Invoke(command(), a, new StringWriter(), stderr));
            Assert.StartsWith("error: ", stderr.ToString());
            Assert.Contains("--no-such-option", stderr.ToString());
        }
    }

    [Fact]
    public void Help_names_the_exit_codes_of_each_program()
    {
        foreach (Func<RootCommand> command in new Func<RootCommand>[] { ProcessorProgram.BuildCommand, () => StressProgram.BuildCommand(TextWriter.Null), PoolStatProgram.BuildCommand })
        {
            var stdout = new StringWriter();
            Assert.Equal(0, ToolCommandLine.Invoke(command(), ["--help"], stdout, new StringWriter()));
            Assert.Contains("Exit codes: 0 ", stdout.ToString());
            Assert.Contains("2 usage or value error", stdout.ToString());
        }
    }
}
