using System.CommandLine;
using System.CommandLine.Parsing;
using System.Runtime.InteropServices;
using PacketProcessor.Cli;
using PacketProcessor.Drivers;
using PacketProcessor.Engine;
using PacketProcessor.Frames;
using PacketProcessor.Programs;
using Spectre.Console;
using UnmanagedPool.Tools;

namespace PacketProcessor;

/// <summary>Command line: parse, run, print.</summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args) => ToolCommandLine.Invoke(BuildCommand(), args, Console.Out, Console.Error);

    /// <summary>The root command with every option (also used by tests).</summary>
    public static RootCommand BuildCommand()
    {
        var driver = new Option<string>("--driver", "-d")
        {
            Description = "Where frames come from: synthetic (an in-process NIC model, no privileges), afpacket or afxdp (a real interface).",
            DefaultValueFactory = _ => "synthetic",
        };
        driver.AcceptOnlyFromAmong("synthetic", "afpacket", "afxdp");
        var xdpMode = new Option<string>("--xdp-mode")
        {
            Description = "afxdp: auto (zero-copy where the driver has it, else copy), copy, zerocopy, or generic (copy on the generic XDP hook).",
            DefaultValueFactory = _ => "auto",
        };
        xdpMode.AcceptOnlyFromAmong("auto", "copy", "zerocopy", "generic");
        var xdpRing = new Option<int>("--xdp-ring") { Description = "afxdp: entries in each socket's fill, completion, RX and TX rings (a power of two).", DefaultValueFactory = _ => 2048 };
        var busyPoll = new Option<int>("--busy-poll")
        {
            Description = "afpacket, afxdp: microseconds a queue keeps polling an empty ring before it sleeps in poll(2) (net.core.busy_poll); 0 sleeps at once.",
        };
        var iface = new Option<string?>("--interface", "-i") { Description = "Interface for --driver afpacket or afxdp (e.g. veth0)." };
        var queues = new Option<int>("--queues", "-q") { Description = "RX queues, one thread and one pool each.", DefaultValueFactory = _ => 1 };
        var program = new Option<string>("--program", "-p")
        {
            Description = "XDP-style program: drop, l2fwd, udp-filter, redirect, count.",
            DefaultValueFactory = _ => "drop",
        };
        program.AcceptOnlyFromAmong(ProgramNames.All);
        var port = new Option<int>("--port") { Description = "UDP destination port for udp-filter (required) and count (0: any UDP)." };
        var duration = ToolCommandLine.DurationOption("--duration", "How long to run", TimeSpan.FromSeconds(10), "-t");
        var size = new Option<int?>("--size", "-s") { Description = "Synthetic frame size in bytes (60..9018; above 1518 with --mtu); default 64." };
        var mix = new Option<string?>("--mix") { Description = "Synthetic size mix instead of --size: imix (64:7,576:4,1518:1) or SIZE:WEIGHT,..." };
        var malformed = new Option<int>("--malformed") { Description = "Synthetic malformed frames per mille (truncated, bad IP header length), counted as aborted." };
        var pool = new Option<string>("--pool")
        {
            Description = "Buffers: pagepool (a PagePool per queue) or arraypool (ArrayPool<byte>.Shared, for comparison).",
            DefaultValueFactory = _ => "pagepool",
        };
        pool.AcceptOnlyFromAmong("pagepool", "arraypool");
        var ring = new Option<int>("--ring") { Description = "RX descriptors per queue (a power of two).", DefaultValueFactory = _ => 512 };
        var xdpFrames = new Option<bool>("--xdp-frames")
        {
            Description = "With --program redirect and --pool pagepool: redirected frames travel as XdpFrames returned with Xdp.ReturnFrameBulk (true, the kernel's way) or as bare pages returned with PagePool.PutPages (false, written --xdp-frames false).",
            DefaultValueFactory = _ => true,
        };
        var rxBuffer = new Option<string>("--rx-buffer")
        {
            Description = "What each RX descriptor holds: page (a whole page), half or quarter (2048 or 1024 B pieces of pages the queue splits itself with FragmentPage, as mlx5).",
            DefaultValueFactory = _ => "page",
        };
        rxBuffer.AcceptOnlyFromAmong("page", "half", "quarter");
        var dmaMap = new Option<bool>("--dma-map") { Description = "Pools map their pages for the device (identity mapper); each received frame is synced for the CPU (SyncForCpu)." };
        var mtu = new Option<int?>("--mtu")
        {
            Description = "IP MTU, 68..9000 (synthetic or afpacket driver, page-pool buffers): frames up to MTU + 18 bytes are received, those longer than one RX buffer as multi-buffer XDP frames (a head and page fragments); longer frames count as aborted. With afpacket it may not exceed the interface's MTU (ip link set IF mtu N). Default: no MTU, a frame must fit one buffer.",
        };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON on stdout (progress goes to stderr)." };
        var quiet = new Option<bool>("--quiet") { Description = "No progress line." };

        var root = new RootCommand(
            "A user-space packet processor on UnmanagedPool: NAPI-style RX queues, each refilled from its own PagePool, running an XDP-style program on every frame.\n" +
            "Exit codes: 0 done; 1 the interface does not exist; 2 usage or value error; 3 AF_PACKET needs root or CAP_NET_RAW; 4 another system error opening the driver; 5 buffers were not given back; 6 the interface has no XDP (or no zero-copy); 7 no such queue on the interface; 8 the interface or queue is busy.")
        {
            driver, iface, queues, program, port, duration, size, mix, malformed, pool, ring, xdpFrames, rxBuffer, dmaMap, mtu, json, quiet, xdpMode, xdpRing, busyPoll,
        };
        root.Validators.Add(r =>
        {
            if (r.GetValue(size) is not null && r.GetValue(mix) is not null)
                r.AddError("Give --size or --mix, not both.");
            if (r.GetValue(mix) is { } m && !SizeMix.TryParse(m, out _, out string? e))
                r.AddError($"--mix {e}");
            if (r.GetValue(size) is int s && (s < FrameBuilder.MinFrameLength || s > FrameBuilder.MaxJumboFrameLength))
                r.AddError($"--size must be {FrameBuilder.MinFrameLength}..{FrameBuilder.MaxJumboFrameLength} bytes (got {s}).");
            if (r.GetValue(port) is < 0 or > 65535)
                r.AddError("--port must be 0..65535.");
            if (r.GetValue(malformed) is < 0 or > 1000)
                r.AddError("--malformed must be 0..1000 (per mille).");
        });
        root.SetAction(r =>
        {
            ProgramNames.TryParse(r.GetValue(program), out ProgramKind kind);
            SizeMix sizes = r.GetValue(mix) is { } m && SizeMix.TryParse(m, out SizeMix? parsed, out _) ? parsed! : SizeMix.Fixed(r.GetValue(size) ?? 64);
            var options = new ProcessorOptions
            {
                Driver = r.GetValue(driver) switch { "afpacket" => DriverKind.AfPacket, "afxdp" => DriverKind.AfXdp, _ => DriverKind.Synthetic },
                XdpMode = r.GetValue(xdpMode) switch { "copy" => AfXdpMode.Copy, "zerocopy" => AfXdpMode.ZeroCopy, "generic" => AfXdpMode.Generic, _ => AfXdpMode.Auto },
                XdpRingSize = r.GetValue(xdpRing),
                BusyPollMicroseconds = r.GetValue(busyPoll),
                Interface = r.GetValue(iface),
                Queues = r.GetValue(queues),
                Program = kind,
                Port = (ushort)r.GetValue(port),
                Duration = r.GetValue(duration),
                Mix = sizes,
                MalformedPerMille = r.GetValue(malformed),
                Pool = r.GetValue(pool) == "arraypool" ? BufferPoolKind.ArrayPool : BufferPoolKind.PagePool,
                RingSize = r.GetValue(ring),
                XdpFrames = r.GetValue(xdpFrames),
                RxBuffer = r.GetValue(rxBuffer) switch { "half" => RxBufferKind.Half, "quarter" => RxBufferKind.Quarter, _ => RxBufferKind.Page },
                DmaMap = r.GetValue(dmaMap),
                Mtu = r.GetValue(mtu),
            };
            if (options.Validate() is { } error)
                throw ToolException.Usage(error);
            return Execute(options, r.GetValue(json), r.GetValue(quiet), Console.Out, Console.Error);
        });
        return root;
    }

    /// <summary>Exit code when buffers were not given back (InFlight not 0 at the end).</summary>
    public const int LeakExitCode = 5;

    /// <summary>Runs with Ctrl-C stopping cleanly; returns the exit code.</summary>
    public static int Execute(ProcessorOptions options, bool json, bool quiet, TextWriter stdout, TextWriter stderr)
    {
        if (options.Validate() is { } error)
        {
            ToolCommandLine.WriteError(stderr, error);
            return ExitCodes.Usage;
        }
        Processor processor;
        try
        {
            processor = new Processor(options);
        }
        catch (DriverException e)
        {
            ToolCommandLine.WriteError(stderr, e.Message);
            return e.ExitCode;
        }
        using (processor)
        using (var cts = new CancellationTokenSource())
        {
            // Ctrl-C (SIGINT) and SIGTERM keep the process: the queues stop, give every buffer back, and the summary
            // still prints.
            Action<PosixSignalContext> onSignal = ctx =>
            {
                ctx.Cancel = true;
                stderr.WriteLine($"{ctx.Signal}: stopping.");
                cts.Cancel();
            };
            using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, onSignal);
            using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, onSignal);
            // Tables and colour on a terminal, plain text into a file or a pipe. The progress callback runs on this
            // thread, once a second: what it allocates is not the packet path's (the queues count their own).
            IAnsiConsole info = ToolConsole.Create(json ? stderr : stdout);
            bool gbps = options.Driver != DriverKind.Synthetic;
            info.Line(Report.Header(options), "bold");
            if (processor.DriverNote is { } note)
                info.Line(note, "grey");
            if (!quiet)
                info.Line(options.Driver == DriverKind.Synthetic ? "Ctrl-C stops early." : "Waiting for traffic; Ctrl-C stops early.", "grey");
            ProcessorResult result = processor.Run(cts.Token, quiet ? null : s => info.WriteLine(Report.ProgressLine(s, gbps)));
            if (json)
                stdout.WriteLine(Report.Json(result));
            else
                Report.WriteSummary(info, result);
            return result.InFlight == 0 ? ExitCodes.Ok : LeakExitCode;
        }
    }
}
