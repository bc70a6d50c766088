using Spectre.Console;

namespace UnmanagedPool.PoolStat;

/// <summary><c>list</c>: .NET processes that have the library loaded.</summary>
internal static class ListCommand
{
    public sealed record Entry(int Pid, string Name, bool? Loaded);

    public static int Run(bool all, bool json)
    {
        var entries = ProcessProbe.PublishedProcesses()
            .Select(pid => new Entry(pid, ProcessProbe.NameOf(pid), ProcessProbe.HasLibrary(pid)))
            .Where(e => all || e.Loaded != false)
            .ToList();
        if (json)
        {
            Console.WriteLine(Json.Write(entries));
            return 0;
        }
        if (entries.Count == 0)
        {
            AnsiConsole.MarkupLine(all ? "[grey]no .NET process publishes a diagnostics port[/]" : $"[grey]no .NET process has {ProcessProbe.LibraryFile} loaded (--all lists every .NET process)[/]");
            return 0;
        }
        var table = new Table().Border(TableBorder.Rounded).AddColumn("PID").AddColumn("process").AddColumn(ProcessProbe.LibraryFile);
        foreach (Entry e in entries)
            table.AddRow(e.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), Markup.Escape(e.Name), e.Loaded switch { true => "loaded", false => "-", null => "unknown" });
        AnsiConsole.Write(table);
        return 0;
    }
}
