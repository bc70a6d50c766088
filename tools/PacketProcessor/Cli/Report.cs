using System.Globalization;
using System.Text;
using System.Text.Json;
using PacketProcessor.Engine;
using PacketProcessor.Programs;
using UnmanagedPool;

namespace PacketProcessor.Cli;

/// <summary>The progress line, the final table and the JSON document.</summary>
public static class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>One line: time, rate, drops and buffers in flight.</summary>
    public static string ProgressLine(ProgressSample s) => string.Create(Inv,
        $"[{s.Elapsed.TotalSeconds,4:0}s] {Rate(s.Mpps)} {s.Gbps,7:0.00} Gbit/s   rx {s.RxPackets,15:N0}   drops {s.Drops,15:N0}   pool inflight {s.InFlight,6:N0}");

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
            $"PacketProcessor: {source}; program {ProgramNames.Name(o.Program)}{port}; {o.Queues} queue{(o.Queues == 1 ? "" : "s")}, ring {o.RingSize}, budget {QueueBase.RefillBatch}; {(o.Pool == BufferPoolKind.PagePool ? "PagePool per queue" : "ArrayPool<byte>.Shared")} buffers; {o.Duration.TotalSeconds:0.#} s");
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

    /// <summary>The final summary: throughput, verdicts per queue and pool statistics per queue.</summary>
    public static string Summary(ProcessorResult r)
    {
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine(string.Create(Inv,
            $"{(r.Interrupted ? "Interrupted after" : "Ran")} {r.Elapsed.TotalSeconds:0.00} s: {r.RxPackets:N0} frames, {Rate(r.Mpps).Trim()}, {r.Gbps:0.00} Gbit/s"));
        sb.AppendLine();
        var cols = r.Queues.Select(q => $"rx{q.Index}").ToList();
        bool total = r.Queues.Count > 1;
        if (total)
            cols.Add("total");
        void Row(string name, Func<QueueResult, long> f, bool sum = true, bool always = true)
        {
            if (!always && r.Queues.All(q => f(q) == 0))
                return;
            sb.Append(Inv, $"  {name,-28}");
            foreach (QueueResult q in r.Queues)
                sb.Append(Inv, $"{f(q),16:N0}");
            if (total)
                sb.Append(sum ? string.Create(Inv, $"{r.Queues.Sum(f),16:N0}") : $"{"",16}");
            sb.AppendLine();
        }
        void Title(string name)
        {
            sb.Append(Inv, $"{name,-30}");
            foreach (string c in cols)
                sb.Append(Inv, $"{c,16}");
            sb.AppendLine();
        }
        Title("Frames");
        Row("received", q => q.RxPackets);
        // What the kernel dropped before the program saw it: sent = received + this, for a sender on the wire.
        if (r.Options.Driver != DriverKind.Synthetic)
            Row("kernel drops (before program)", q => q.KernelDrops);
        // Verdicts and error drops that never happened are left out: every frame is in one of the rows shown.
        Row("drop", q => q.Drop, always: false);
        Row("aborted (malformed)", q => q.Aborted, always: false);
        Row("pass (freed by worker)", q => q.Pass, always: false);
        Row("tx", q => q.Tx, always: false);
        Row("redirect (sent)", q => q.Redirect, always: false);
        Row("redirect (transmitted here)", q => q.RedirectTx, always: false);
        Row("dropped: inbox full", q => q.RedirectErrors, always: false);
        Row("dropped: backlog full", q => q.PassBacklogDrops, always: false);
        Row("dropped: tx error", q => q.TxErrors, always: false);
        Row("ring empty (no buffers)", q => q.RxNoBuffers, always: false);
        Row("polls paused (flow control)", q => q.RxPaused, always: false);
        if (r.Options.Program is ProgramKind.Count or ProgramKind.UdpFilter)
            Row(r.Options.Port != 0 ? $"matched (UDP port {r.Options.Port})" : "matched (UDP)", q => q.Matched);
        sb.AppendLine();
        if (r.Options.Pool == BufferPoolKind.PagePool)
        {
            Title("Page pool (after release)");
            Row("alloc fast", q => S(q).AllocFast);
            Row("alloc slow", q => S(q).AllocSlow);
            Row("alloc slow high order", q => S(q).AllocSlowHighOrder);
            Row("alloc empty", q => S(q).AllocEmpty);
            Row("alloc refill", q => S(q).AllocRefill);
            Row("alloc waive", q => S(q).AllocWaive);
            Row("recycle cached", q => S(q).RecycleCached);
            Row("recycle cache full", q => S(q).RecycleCacheFull);
            Row("recycle ring", q => S(q).RecycleRing);
            Row("recycle ring full", q => S(q).RecycleRingFull);
            Row("recycle released refcnt", q => S(q).RecycleReleasedRefcnt);
            Row("hold", q => S(q).Hold);
            Row("release", q => S(q).Release);
            Row("inflight", q => S(q).InFlight);
        }
        else
        {
            Title("ArrayPool<byte>.Shared");
            Row("rented", q => q.ArraysRented);
            Row("returned", q => q.ArraysReturned);
            Row("inflight", q => q.InFlight);
        }
        sb.AppendLine();
        sb.AppendLine(string.Create(Inv, $"Managed allocations while running: {r.AllocatedBytes:N0} bytes, {r.Gen0Collections} gen-0 GCs."));
        sb.AppendLine(r.InFlight == 0
            ? "InFlight 0 on every queue: every buffer went back where it came from."
            : string.Create(Inv, $"WARNING: {r.InFlight:N0} buffers were not given back."));
        return sb.ToString();
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
