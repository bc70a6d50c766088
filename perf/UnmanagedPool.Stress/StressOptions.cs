using System.Globalization;

namespace UnmanagedPool.Stress;

/// <summary>The operations a worker draws from, each with a weight.</summary>
public enum StressOp
{
    /// <summary>Allocate one page (consumer path on the worker's own pool, shared path on another's) and hold it.</summary>
    Alloc,
    /// <summary>Give one held page back (direct or through the ring).</summary>
    Put,
    /// <summary>Consumer-handle fast path: alloc, write, check, recycle_direct.</summary>
    Direct,
    /// <summary>AllocPages/PutPages of 64.</summary>
    Bulk,
    /// <summary>Fragments of pages (AllocFrag), each put back on its own.</summary>
    Frag,
    /// <summary>Packets made of several fragments, released together.</summary>
    Packet,
    /// <summary>Hand held pages to another thread, which puts them; and allocate from another thread's pool.</summary>
    Cross,
    /// <summary>Create a pool, spread its pages over threads, dispose it while they are in flight.</summary>
    Dispose,
    /// <summary>
    /// A page the worker splits itself as a NIC driver does: <c>FragmentPage</c> with a bias, some pieces handed out
    /// (held here or sent to another thread), the rest dropped and drained with <c>UnrefPage</c>.
    /// </summary>
    Split,
    /// <summary>
    /// A multi-buffer XDP buffer (a head page and fragment pages) given back whole: xdp_return_buff, a frame returned
    /// here (one by one, rx_napi or in bulk) or on another thread, or a packet built from it and freed.
    /// </summary>
    MultiBuffer,
}

/// <summary>Settings of one stress run.</summary>
public sealed class StressOptions
{
    /// <summary>Worker threads, each the consumer of its own pool.</summary>
    public int Threads { get; set; } = 2;

    /// <summary>How long the workers run.</summary>
    public TimeSpan Duration { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Seed of every generator (workers, fault injectors, cookies).</summary>
    public ulong Seed { get; set; } = 1;

    /// <summary>Operation weights (index: <see cref="StressOp"/>).</summary>
    public double[] Mix { get; set; } = DefaultMix();

    /// <summary>Probability that one page allocation from the provider fails.</summary>
    public double FaultRate { get; set; }

    /// <summary>Allocation order of the pools.</summary>
    public int Order { get; set; }

    /// <summary>Most pages a worker holds at once.</summary>
    public int MaxHeld { get; set; } = 512;

    /// <summary>Interval of the progress line; zero for none.</summary>
    public TimeSpan ProgressInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Stop at the first violation (default) instead of running to the end.</summary>
    public bool KeepGoing { get; set; }

    /// <summary>Where to write a JSON summary, or null.</summary>
    public string? JsonPath { get; set; }

    /// <summary>Whether this build has the fragment and packet operations.</summary>
    public static bool FragmentsAvailable =>
#if HAS_FRAGMENTS
        true;
#else
        false;
#endif

    /// <summary>The default mix: every operation this build has.</summary>
    public static double[] DefaultMix()
    {
        var mix = new double[Enum.GetValues<StressOp>().Length];
        mix[(int)StressOp.Alloc] = 30;
        mix[(int)StressOp.Put] = 30;
        mix[(int)StressOp.Direct] = 20;
        mix[(int)StressOp.Bulk] = 4;
        mix[(int)StressOp.Cross] = 10;
        mix[(int)StressOp.Dispose] = 0.02;
        mix[(int)StressOp.Split] = 4;
        if (FragmentsAvailable)
        {
            mix[(int)StressOp.Frag] = 8;
            mix[(int)StressOp.Packet] = 4;
            mix[(int)StressOp.MultiBuffer] = 4;
        }
        return mix;
    }

    /// <summary>Canonical name of an operation in <c>--mix</c>.</summary>
    public static string NameOf(StressOp op) => op switch
    {
        StressOp.Cross => "cross-thread-put",
        StressOp.MultiBuffer => "mbuf",
        _ => op.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// Parses <c>--mix</c>: <c>all</c>, or a comma-separated list of <c>name</c> or <c>name=weight</c>, names being
    /// alloc, put, direct, bulk, frag, packet, cross-thread-put (or cross), dispose (or dispose-in-flight), split, mbuf (or multi-buffer). A name
    /// without a weight takes its default weight. Fragment operations in a build without them are reported in
    /// <paramref name="notes"/> and skipped.
    /// </summary>
    /// <exception cref="FormatException">An unknown name or a bad weight.</exception>
    public static double[] ParseMix(string text, List<string> notes)
    {
        double[] defaults = DefaultMix();
        if (string.IsNullOrWhiteSpace(text) || text.Trim().Equals("all", StringComparison.OrdinalIgnoreCase))
            return defaults;
        var mix = new double[defaults.Length];
        foreach (string raw in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string name = raw;
            double? weight = null;
            int eq = raw.IndexOf('=');
            if (eq >= 0)
            {
                name = raw[..eq].Trim();
                if (!double.TryParse(raw[(eq + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double w) || w < 0 || double.IsInfinity(w))
                    throw new FormatException($"--mix: bad weight in '{raw}'.");
                weight = w;
            }
            StressOp op = name.ToLowerInvariant() switch
            {
                "alloc" => StressOp.Alloc,
                "put" => StressOp.Put,
                "direct" => StressOp.Direct,
                "bulk" => StressOp.Bulk,
                "frag" => StressOp.Frag,
                "packet" => StressOp.Packet,
                "cross" or "cross-thread" or "cross-thread-put" => StressOp.Cross,
                "dispose" or "dispose-in-flight" => StressOp.Dispose,
                "split" => StressOp.Split,
                "mbuf" or "multi-buffer" => StressOp.MultiBuffer,
                _ => throw new FormatException($"--mix: unknown operation '{name}' (known: alloc, put, direct, bulk, frag, packet, cross-thread-put, dispose, split, mbuf)."),
            };
            if (op is StressOp.Frag or StressOp.Packet or StressOp.MultiBuffer && !FragmentsAvailable)
            {
                notes.Add($"{NameOf(op)}: not available in this build (HAS_FRAGMENTS off); skipped");
                continue;
            }
            double def = op switch
            {
                StressOp.Alloc or StressOp.Put => 30,
                StressOp.Direct => 20,
                StressOp.Cross => 10,
                StressOp.Frag => 8,
                StressOp.Dispose => 0.02,
                _ => 4,
            };
            mix[(int)op] = weight ?? def;
        }
        if (mix.Sum() <= 0)
            throw new FormatException("--mix: no operation with a positive weight.");
        return mix;
    }

    /// <summary>The mix as text, <c>name=weight</c> for each operation with a positive weight.</summary>
    public string DescribeMix() => string.Join(",", Enum.GetValues<StressOp>()
        .Where(op => Mix[(int)op] > 0)
        .Select(op => $"{NameOf(op)}={Mix[(int)op].ToString(CultureInfo.InvariantCulture)}"));
}
