using Spectre.Console;

namespace UnmanagedPool.Tools;

/// <summary>
/// The console look of the command-line programs (Spectre.Console): rounded tables and colour on a terminal; plain
/// text when the output is redirected to a file or a pipe (or is not the console at all), so that scripts and tests
/// read stable columns with no escape codes and no box characters.
/// </summary>
public static class ToolConsole
{
    /// <summary>The narrowest line width the renderer assumes: wide enough that no table row or progress line is cut.</summary>
    public const int PlainWidth = 240;

    /// <summary>A console writing to <paramref name="writer"/>: plain unless it is the process's stdout or stderr on a terminal.</summary>
    public static IAnsiConsole Create(TextWriter writer)
    {
        bool terminal = (ReferenceEquals(writer, Console.Out) && !Console.IsOutputRedirected)
                        || (ReferenceEquals(writer, Console.Error) && !Console.IsErrorRedirected);
        if (terminal && Environment.GetEnvironmentVariable("TERM") == "dumb")
            terminal = false;
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = terminal ? InteractionSupport.Detect : InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        // Lines are never cut by the renderer (a terminal folds a long progress line itself; a file keeps it whole);
        // tables take only the width they need.
        console.Profile.Width = Math.Max(console.Profile.Width, PlainWidth);
        if (!terminal)
        {
            console.Profile.Capabilities.Unicode = false;
            console.Profile.Capabilities.Links = false;
        }
        return console;
    }

    /// <summary>Whether <paramref name="console"/> writes plain text (no escape codes, no box characters).</summary>
    public static bool IsPlain(this IAnsiConsole console) => !console.Profile.Capabilities.Ansi;

    /// <summary>A table in the programs' look: rounded borders on a terminal, none in plain text; the first column left-aligned, the others right-aligned.</summary>
    public static Table NewTable(this IAnsiConsole console, params string[] columns)
    {
        var table = new Table { Border = console.IsPlain() ? TableBorder.None : TableBorder.Rounded };
        for (int i = 0; i < columns.Length; i++)
        {
            var column = new TableColumn(console.IsPlain() ? columns[i] : $"[bold]{Markup.Escape(columns[i])}[/]");
            table.AddColumn(i == 0 ? column.LeftAligned() : column.RightAligned());
        }
        return table;
    }

    /// <summary>A section heading: bold and underlined on a terminal, <c>== title ==</c> in plain text.</summary>
    public static void Heading(this IAnsiConsole console, string title)
    {
        if (console.IsPlain())
            console.WriteLine($"== {title} ==");
        else
            console.MarkupLine($"[bold underline]{Markup.Escape(title)}[/]");
    }

    /// <summary>Writes <paramref name="text"/> as one line, coloured with <paramref name="style"/> on a terminal.</summary>
    public static void Line(this IAnsiConsole console, string text, string? style = null)
    {
        if (style == null || console.IsPlain())
            console.WriteLine(text);
        else
            console.MarkupLine($"[{style}]{Markup.Escape(text)}[/]");
    }
}
