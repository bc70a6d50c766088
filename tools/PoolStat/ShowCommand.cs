using Spectre.Console;

namespace UnmanagedPool.PoolStat;

/// <summary><c>show PID</c>: every pool's counters, refreshed each interval, like <c>ethtool -S</c> or netlink <c>page-pool-get</c>.</summary>
internal static class ShowCommand
{
    public sealed record Output(int Pid, string Process, DateTimeOffset Time, IReadOnlyList<PoolSnapshot> Pools);

    public static async Task<int> RunAsync(int pid, bool once, bool json, double interval, CancellationToken cancel)
    {
        var client = ProcessProbe.Attach(pid);
        string name = ProcessProbe.NameOf(pid);
        if (once)
        {
            // The first round is written as soon as the session starts; allow for a busy or slow process.
            IReadOnlyList<PoolSnapshot>? pools = StatsSession.ReadOnce(client, TimeSpan.FromSeconds(10));
            if (pools == null)
                throw new PoolStatException($"error: process {pid} ({name}) sent no page pool statistics within 10 s: {ProcessProbe.LibraryFile} is not loaded or no pool was ever created.");
            if (json)
                Console.WriteLine(Json.Write(new Output(pid, name, DateTimeOffset.UtcNow, pools)));
            else
                AnsiConsole.Write(Render(pid, name, pools, null, interval));
            return 0;
        }

        using var session = new StatsSession(client, interval);
        var latest = new TaskCompletionSource();
        IReadOnlyList<PoolSnapshot>? current = null, previous = null;
        var gate = new Lock();
        var signal = new SemaphoreSlim(0);
        session.Snapshot += s =>
        {
            lock (gate)
            {
                previous = current;
                current = s;
            }
            if (json)
                Console.WriteLine(Json.Write(new Output(pid, name, DateTimeOffset.UtcNow, s)));
            signal.Release();
        };
        if (json)
        {
            await Task.WhenAny(session.Completion, Task.Delay(Timeout.Infinite, cancel)).ConfigureAwait(false);
            return 0;
        }

        await AnsiConsole.Live(new Markup($"[grey]waiting for statistics from {pid}...[/]")).StartAsync(async ctx =>
        {
            while (!cancel.IsCancellationRequested && !session.Completion.IsCompleted)
            {
                try
                {
                    await signal.WaitAsync(TimeSpan.FromSeconds(1), cancel).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                IReadOnlyList<PoolSnapshot>? now, before;
                lock (gate)
                {
                    now = current;
                    before = previous;
                }
                if (now != null)
                {
                    ctx.UpdateTarget(Render(pid, name, now, before, interval));
                    ctx.Refresh();
                }
            }
        }).ConfigureAwait(false);
        if (session.Completion.IsCompleted && !cancel.IsCancellationRequested)
            AnsiConsole.MarkupLine($"[grey]process {pid} ended the session (exited?)[/]");
        return 0;
    }

    /// <summary>A table with one row per counter and one column per pool; rates per second when a previous round exists.</summary>
    public static Table Render(int pid, string name, IReadOnlyList<PoolSnapshot> pools, IReadOnlyList<PoolSnapshot>? previous, double interval)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"page pools of {pid} ({Markup.Escape(name)}) at {DateTime.Now:HH:mm:ss}");
        table.AddColumn("counter");
        if (pools.Count == 0)
        {
            table.AddColumn("no live pools");
            return table;
        }
        foreach (PoolSnapshot p in pools)
        {
            string state = p.Destroying ? " [yellow](destroying)[/]" : "";
            string identity = p.Identity() is { Length: > 0 } id ? $"\n[grey]{Markup.Escape(id)}[/]" : "";
            table.AddColumn(new TableColumn($"{p.Id} {Markup.Escape(p.Name)}{state}\n[grey]order {p.Order}, nid {p.Nid}, {p.BufferSize} B{(p.MemoryProvider.Length > 0 ? ", " + Markup.Escape(p.MemoryProvider) : "")}[/]{identity}").RightAligned());
        }
        var rows = pools[0].Counters().Select(c => c.Name).ToList();
        var before = previous?.ToDictionary(p => p.Id);
        foreach (string counter in rows)
        {
            var cells = new List<string> { counter };
            foreach (PoolSnapshot p in pools)
            {
                long value = p.Counters().First(c => c.Name == counter).Value;
                string cell = value.ToString("N0", System.Globalization.CultureInfo.InvariantCulture);
                if (before != null && before.TryGetValue(p.Id, out var old))
                {
                    long delta = value - old.Counters().First(c => c.Name == counter).Value;
                    if (delta != 0)
                        cell += $" [grey]{(delta > 0 ? "+" : "")}{delta / interval:N0}/s[/]";
                }
                cells.Add(cell);
            }
            table.AddRow(cells.ToArray());
        }
        return table;
    }
}
