namespace UnmanagedPool.Native;

/// <summary>
/// Fails each allocation with a fixed probability, drawn from a seeded generator so a run can be replayed
/// (the kernel's fault-injection <c>probability</c> attribute). Thread-safe.
/// </summary>
public sealed class RateFaultInjector : IAllocFaultInjector
{
    private readonly Lock _lock = new();
    private ulong _state;
    private long _calls;
    private long _failures;

    /// <summary>Creates an injector failing with <paramref name="probability"/>.</summary>
    /// <param name="probability">0 (never) .. 1 (always).</param>
    /// <param name="seed">Seed of the generator: the same seed gives the same sequence of failures.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="probability"/> is outside 0..1.</exception>
    public RateFaultInjector(double probability, ulong seed = 1)
    {
        if (!(probability >= 0 && probability <= 1))
            throw new ArgumentOutOfRangeException(nameof(probability), probability, "A probability is 0..1.");
        Probability = probability;
        _state = seed == 0 ? 0x9e3779b97f4a7c15UL : seed;
    }

    /// <summary>The probability of failing one call.</summary>
    public double Probability { get; }

    /// <summary>Whether the injector fails anything; off, every call succeeds (and still counts).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Only runs of at least this order fail (0: all).</summary>
    public int MinOrder { get; set; }

    /// <summary>Calls seen.</summary>
    public long Calls { get { lock (_lock) return _calls; } }

    /// <summary>Calls failed.</summary>
    public long Failures { get { lock (_lock) return _failures; } }

    /// <inheritdoc />
    public bool ShouldFail(int order)
    {
        lock (_lock)
        {
            _calls++;
            // xorshift64*: cheap, deterministic, good enough to spread failures.
            _state ^= _state >> 12;
            _state ^= _state << 25;
            _state ^= _state >> 27;
            double draw = ((_state * 0x2545F4914F6CDD1DUL) >> 11) * (1.0 / (1UL << 53));
            if (!Enabled || order < MinOrder || draw >= Probability)
                return false;
            _failures++;
            return true;
        }
    }
}
