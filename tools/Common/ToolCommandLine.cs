using System.CommandLine;

namespace UnmanagedPool.Tools;

/// <summary>
/// The error style of the command-line programs: each parse error as <c>error: …</c> on stderr, one hint line
/// (no help dump), exit code 2; a <see cref="ToolException"/> from an action as one <c>error: …</c> line and its
/// exit code, with the same hint line when it is a usage error.
/// </summary>
public static class ToolCommandLine
{
    /// <summary>The prefix of every error line.</summary>
    public const string ErrorPrefix = "error: ";

    /// <summary>Parses <paramref name="args"/> with <paramref name="root"/> and runs the chosen action; returns the exit code.</summary>
    public static int Invoke(RootCommand root, string[] args, TextWriter stdout, TextWriter stderr)
    {
        ParseResult result = root.Parse(args);
        if (result.Errors.Count > 0)
        {
            foreach (var error in result.Errors)
                WriteError(stderr, error.Message);
            WriteHelpHint(stderr, root, result);
            return ExitCodes.Usage;
        }
        try
        {
            return result.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (ToolException e)
        {
            WriteError(stderr, e.Message);
            if (e.ExitCode == ExitCodes.Usage)
                WriteHelpHint(stderr, root, result);
            return e.ExitCode;
        }
    }

    // One line instead of the whole help: which command's --help lists the options.
    private static void WriteHelpHint(TextWriter stderr, RootCommand root, ParseResult result)
    {
        string command = result.CommandResult.Command is RootCommand ? root.Name : $"{root.Name} {result.CommandResult.Command.Name}";
        stderr.WriteLine($"Run '{command} --help' for the options.");
    }

    /// <summary>Writes <paramref name="message"/> as one error line (the prefix is not doubled).</summary>
    public static void WriteError(TextWriter stderr, string message) =>
        stderr.WriteLine(message.StartsWith(ErrorPrefix, StringComparison.Ordinal) ? message : ErrorPrefix + message);

    /// <summary>
    /// A duration option read with <see cref="DurationParser"/>; a text that is not a duration is a parse error
    /// naming the option.
    /// </summary>
    public static Option<TimeSpan> DurationOption(string name, string description, TimeSpan defaultValue, params string[] aliases) => new(name, aliases)
    {
        Description = $"{description} ({DurationParser.Syntax}).",
        DefaultValueFactory = _ => defaultValue,
        CustomParser = r =>
        {
            string text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
            if (DurationParser.TryParse(text, out TimeSpan t))
                return t;
            r.AddError($"{name}: {DurationParser.NotADuration(text)}");
            return default;
        },
    };
}
