using System.Globalization;
using System.Text;
using System.Text.Json;
using PacketProcessor.Engine;
using PacketProcessor.Programs;
using Spectre.Console;
using UnmanagedPool;
using UnmanagedPool.Tools;

namespace PacketProcessor.Cli;

/// <summary>The progress line, the final table and the JSON document.</summary>
public static class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>One line: time, rate, drops and buffers in flight; the bit rate only where <paramref name="gbps"/> (not for the synthetic NIC, which writes 64 bytes of each frame).</summary>
    public static string ProgressLine(ProgressSample s, bool gbps = true) => string.Create(Inv,
        $"[{s.Elapsed.TotalSeconds,4:0}s] {Rate(s.Mpps)}{(gbps ? string.Create(Inv, $" {s.Gbps,7:0.00} Gbit/s") : "")}   rx {s.RxPackets,15:N0}   drops {s.Drops,15:N0}   pool inflight {s.InFlight,6:N0}");

    /// <summary>A packet rate in Mpps, or kpps/pps when it is small (real traffic from a test sender).</summary>
    public static string Rate(double mpps) => mpps switch
    {
        >= 0.1 => string.Create(Inv, $"{mpps,7:0.00} Mpps"),
        >= 0.0001 => string.Create(Inv, $"{mpps * 1e3,7:0.0} kpps"),
        _ => string.Create(Inv, $"{mpps * 1e6,7:0} pps "),
    };

    /// <summary>A one-line description of the run's settings.</summary>
    public static string Header(ProcessorOptions o)
    {
        string source = o.Driver switch
        {
            DriverKind.Synthetic => $"synthetic NIC, frames {o.Mix}",
            DriverKind.AfXdp => $"afxdp on {o.Interface} ({DriverName(o.XdpMode)} mode, rings {o.XdpRingSize})",
            _ => $"afpacket on {o.Interface}",
        };
        string port = o.Port != 0 ? $" --port {o.Port}" : "";
        return string.Create(Inv,
            $"PacketProcessor: {source}; program {ProgramNames.Name(o.Program)}{port}; {o.Queues} queue{(o.Queues == 1 ? "" : "s")}, ring {o.RingSize}, budget {QueueBase.RefillBatch}; {(o.Pool == BufferPoolKind.PagePool ? "PagePool per queue" : "ArrayPool<byte>.Shared")} buffers{(o.RxBuffer != RxBufferKind.Page ? $" ({o.RxBuffer.Name()} pages)" : "")}{(o.DmaMap ? ", DMA-mapped" : "")}{(o.Mtu is int mtu ? $", MTU {mtu} (multi-buffer)" : "")}; {o.Duration.TotalSeconds:0.#} s");
    }

    /// <summary>The CLI name of an afxdp mode.</summary>
    public static string DriverName(AfXdpMode mode) => mode switch
    {
        AfXdpMode.Copy => "copy",
        AfXdpMode.ZeroCopy => "zerocopy",
        AfXdpMode.Generic => "generic",
        _ => "auto",
    };

    /// <summary>The CLI name of a driver.</summary>
    public static string DriverName(DriverKind driver) => driver switch
    {
        DriverKind.AfPacket => "afpacket",
        DriverKind.AfXdp => "afxdp",
        _ => "synthetic",
    };

    /// <summary>The final summary as plain text (what <see cref="WriteSummary"/> writes to a file or a pipe).</summary>
    public static string Summary(ProcessorResult r)
    {
        var text = new StringWriter(Inv);
        WriteSummary(ToolConsole.Create(text), r);
        return text.ToString();
    }

    /// <summary>The final summary: throughput, verdicts per queue and pool statistics per queue, as tables on <paramref name="console"/>.</summary>
    public static void WriteSummary(IAnsiConsole console, ProcessorResult r)
    {
        console.WriteLine();
        // The synthetic NIC writes only the first 64 bytes of each frame, so a bit rate from its frame lengths would
        // not be bytes moved: shown for real traffic only (the JSON document keeps it, as frame lengths).
        string gbps = r.Options.Driver == DriverKind.Synthetic ? "" : string.Create(Inv, $", {r.Gbps:0.00} Gbit/s");
        console.Line(string.Create(Inv,
            $"{(r.Interrupted ? "Interrupted after" : "Ran")} {r.Elapsed.TotalSeconds:0.00} s: {r.RxPackets:N0} frames, {Rate(r.Mpps).Trim()}{gbps}"), "bold");
        console.WriteLine();
        bool total = r.Queues.Count > 1;
        string[] Columns(string title) => [title, .. r.Queues.Select(q => $"rx{q.Index}"), .. total ? new[] { "total" } : []];
        void Row(Table table, string name, Func<QueueResult, long> f, bool sum = true, bool always = true)
        {
            if (!always && r.Queues.All(q => f(q) == 0))
                return;
            var cells = new List<string> { name };
            cells.AddRange(r.Queues.Select(q => f(q).ToString("N0", Inv)));
            if (total)
                cells.Add(sum ? r.Queues.Sum(f).ToString("N0", Inv) : "");
            table.AddRow(cells.Select(Markup.Escape).ToArray());
        }

        Table frames = console.NewTable(Columns("Frames"));
        Row(frames, "received", q => q.RxPackets);
        // What the kernel dropped before the program saw it: sent = received + this, for a sender on the wire.
        if (r.Options.Driver != DriverKind.Synthetic)
            Row(frames, "kernel drops (before program)", q => q.KernelDrops);
        // Verdicts and error drops that never happened are left out: every frame is in one of the rows shown.
        Row(frames, "drop", q => q.Drop, always: false);
        Row(frames, "aborted (malformed)", q => q.Aborted, always: false);
        Row(frames, "pass (freed by worker)", q => q.Pass, always: false);
        Row(frames, "tx", q => q.Tx, always: false);
        Row(frames, "redirect (sent)", q => q.Redirect, always: false);
        Row(frames, "redirect (transmitted here)", q => q.RedirectTx, always: false);
        Row(frames, "dropped: inbox full", q => q.RedirectErrors, always: false);
        Row(frames, "dropped: backlog full", q => q.PassBacklogDrops, always: false);
        Row(frames, "dropped: tx error", q => q.TxErrors, always: false);
        Row(frames, "ring empty (no buffers)", q => q.RxNoBuffers, always: false);
        Row(frames, "polls paused (flow control)", q => q.RxPaused, always: false);
        if (r.Options.Program is ProgramKind.Count or ProgramKind.UdpFilter)
            Row(frames, r.Options.Port != 0 ? $"matched (UDP port {r.Options.Port})" : "matched (UDP)", q => q.Matched);
        console.Write(frames);
        console.WriteLine();
        if (r.Options.Pool == BufferPoolKind.PagePool)
        {
            Table pool = console.NewTable(Columns("Page pool (after release)"));
            Row(pool, "alloc fast", q => S(q).AllocFast);
            Row(pool, "alloc slow", q => S(q).AllocSlow);
            Row(pool, "alloc slow high order", q => S(q).AllocSlowHighOrder);
            Row(pool, "alloc empty", q => S(q).AllocEmpty);
            Row(pool, "alloc refill", q => S(q).AllocRefill);
            Row(pool, "alloc waive", q => S(q).AllocWaive);
            Row(pool, "recycle cached", q => S(q).RecycleCached);
            Row(pool, "recycle cache full", q => S(q).RecycleCacheFull);
            Row(pool, "recycle ring", q => S(q).RecycleRing);
            Row(pool, "recycle ring full", q => S(q).RecycleRingFull);
            Row(pool, "recycle released refcnt", q => S(q).RecycleReleasedRefcnt);
            Row(pool, "hold", q => S(q).Hold);
            Row(pool, "release", q => S(q).Release);
            Row(pool, "inflight", q => S(q).InFlight);
            Row(pool, "pages taken for RX", q => q.RxPages);
            console.Write(pool);
        }
        else
        {
            Table arrays = console.NewTable(Columns("ArrayPool<byte>.Shared"));
            Row(arrays, "rented", q => q.ArraysRented);
            Row(arrays, "returned", q => q.ArraysReturned);
            Row(arrays, "inflight", q => q.InFlight);
            console.Write(arrays);
        }
        console.WriteLine();
        if (r.Options.Pool == BufferPoolKind.PagePool)
            console.Line(string.Create(Inv, $"Pages per frame: {r.PagesPerFrame:0.000} ({r.Options.RxBuffer.Name()} buffers{(r.Options.Mtu is int mtu ? $", MTU {mtu}: a frame spans as many buffers as it needs" : "")})."));
        console.Line(string.Create(Inv, $"Managed allocations while running: {r.AllocatedBytes:N0} bytes, {r.Gen0Collections} gen-0 GCs."));
        if (r.InFlight == 0)
            console.Line("InFlight 0 on every queue: every buffer went back where it came from.", "green");
        else
            console.Line(string.Create(Inv, $"WARNING: {r.InFlight:N0} buffers were not given back."), "red bold");
    }

    private static PagePoolStats S(QueueResult q) => q.Pool ?? default;

    /// <summary>The result as a JSON document.</summary>
    public static string Json(ProcessorResult r)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            ProcessorOptions o = r.Options;
            w.WriteStartObject();
            w.WriteString("driver", DriverName(o.Driver));
            if (o.Driver == DriverKind.AfXdp)
                w.WriteString("xdpMode", DriverName(o.XdpMode));
            if (o.Interface != null)
                w.WriteString("interface", o.Interface);
            w.WriteString("program", ProgramNames.Name(o.Program));
            w.WriteNumber("port", o.Port);
            w.WriteString("rxBuffer", o.RxBuffer.Name());
            w.WriteBoolean("dmaMap", o.DmaMap);
            w.WriteNumber("pagesPerFrame", r.PagesPerFrame);
            w.WriteNumber("queues", o.Queues);
            w.WriteString("pool", o.Pool == BufferPoolKind.PagePool ? "pagepool" : "arraypool");
            w.WriteString("mix", o.Mix.ToString());
            w.WriteNumber("ring", o.RingSize);
            w.WriteNumber("seconds", Math.Round(r.Elapsed.TotalSeconds, 3));
            w.WriteBoolean("interrupted", r.Interrupted);
            w.WriteNumber("rxPackets", r.RxPackets);
            w.WriteNumber("rxBytes", r.RxBytes);
            w.WriteNumber("mpps", Math.Round(r.Mpps, 3));
            w.WriteNumber("gbps", Math.Round(r.Gbps, 3));
            w.WriteNumber("drops", r.Drops);
            w.WriteNumber("kernelDrops", r.KernelDrops);
            w.WriteNumber("matched", r.Matched);
            w.WriteNumber("inFlight", r.InFlight);
            w.WriteNumber("allocatedBytes", r.AllocatedBytes);
            w.WriteNumber("gen0Collections", r.Gen0Collections);
            w.WriteStartArray("perQueue");
            foreach (QueueResult q in r.Queues)
            {
                w.WriteStartObject();
                w.WriteNumber("queue", q.Index);
                w.WriteNumber("rxPackets", q.RxPackets);
                w.WriteNumber("rxBytes", q.RxBytes);
                w.WriteNumber("drop", q.Drop);
                w.WriteNumber("aborted", q.Aborted);
                w.WriteNumber("pass", q.Pass);
                w.WriteNumber("tx", q.Tx);
                w.WriteNumber("redirect", q.Redirect);
                w.WriteNumber("redirectTx", q.RedirectTx);
                w.WriteNumber("redirectErrors", q.RedirectErrors);
                w.WriteNumber("passBacklogDrops", q.PassBacklogDrops);
                w.WriteNumber("txErrors", q.TxErrors);
                w.WriteNumber("rxNoBuffers", q.RxNoBuffers);
                w.WriteNumber("rxPaused", q.RxPaused);
                w.WriteNumber("kernelDrops", q.KernelDrops);
                w.WriteNumber("matched", q.Matched);
                w.WriteNumber("inFlight", q.InFlight);
                if (q.Pool is { } s)
                {
                    w.WriteStartObject("pagePool");
                    w.WriteNumber("allocFast", s.AllocFast);
                    w.WriteNumber("allocSlow", s.AllocSlow);
                    w.WriteNumber("allocSlowHighOrder", s.AllocSlowHighOrder);
                    w.WriteNumber("allocEmpty", s.AllocEmpty);
                    w.WriteNumber("allocRefill", s.AllocRefill);
                    w.WriteNumber("allocWaive", s.AllocWaive);
                    w.WriteNumber("recycleCached", s.RecycleCached);
                    w.WriteNumber("recycleCacheFull", s.RecycleCacheFull);
                    w.WriteNumber("recycleRing", s.RecycleRing);
                    w.WriteNumber("recycleRingFull", s.RecycleRingFull);
                    w.WriteNumber("recycleReleasedRefcnt", s.RecycleReleasedRefcnt);
                    w.WriteNumber("hold", s.Hold);
                    w.WriteNumber("release", s.Release);
                    w.WriteNumber("inFlight", s.InFlight);
                    w.WriteEndObject();
                }
                else
                {
                    w.WriteNumber("arraysRented", q.ArraysRented);
                    w.WriteNumber("arraysReturned", q.ArraysReturned);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
