namespace UnmanagedPool.Native;

/// <summary>
/// Fails allocations on a schedule of call numbers (1 for the first call the provider makes after the injector
/// is set): the Nth call, a set of calls, every Nth call, or a pattern such as <c>"..x.xx"</c>, optionally
/// repeated. Deterministic and thread-safe.
/// </summary>
public sealed class ScheduleFaultInjector : IAllocFaultInjector
{
    private readonly Lock _lock = new();
    private readonly Func<long, bool> _fails;
    private long _calls;
    private long _failures;

    private ScheduleFaultInjector(Func<long, bool> fails) => _fails = fails;

    /// <summary>Fails exactly the calls numbered in <paramref name="calls"/> (1-based).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A call number is below 1.</exception>
    public static ScheduleFaultInjector Calls(params long[] calls)
    {
        foreach (long c in calls)
            ArgumentOutOfRangeException.ThrowIfLessThan(c, 1, nameof(calls));
        var set = new HashSet<long>(calls);
        return new ScheduleFaultInjector(set.Contains);
    }

    /// <summary>Fails the <paramref name="n"/>th call only.</summary>
    public static ScheduleFaultInjector Nth(long n) => Calls(n);

    /// <summary>Fails every <paramref name="n"/>th call (n, 2n, 3n, ...).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="n"/> is below 1.</exception>
    public static ScheduleFaultInjector EveryNth(long n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        return new ScheduleFaultInjector(c => c % n == 0);
    }

    /// <summary>Fails <paramref name="count"/> calls in a row from call <paramref name="first"/> on.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="first"/> is below 1 or <paramref name="count"/> negative.</exception>
    public static ScheduleFaultInjector Range(long first, long count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(first, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return new ScheduleFaultInjector(c => c >= first && c - first < count);
    }

    /// <summary>
    /// Fails by a pattern of one character per call: 'x' or 'X' fails, '.' succeeds. Past its end the pattern
    /// starts again when <paramref name="repeat"/>, else every later call succeeds.
    /// </summary>
    /// <exception cref="ArgumentException">The pattern is empty or holds another character.</exception>
    public static ScheduleFaultInjector Pattern(string pattern, bool repeat = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        bool[] fails = new bool[pattern.Length];
        for (int i = 0; i < pattern.Length; i++)
        {
            fails[i] = pattern[i] switch
            {
                'x' or 'X' => true,
                '.' => false,
                _ => throw new ArgumentException($"Pattern character '{pattern[i]}' at {i} is neither 'x' nor '.'.", nameof(pattern)),
            };
        }
        return new ScheduleFaultInjector(c =>
        {
            long i = c - 1;
            if (i >= fails.Length && !repeat)
                return false;
            return fails[i % fails.Length];
        });
    }

    /// <summary>Fails every call (until <see cref="Enabled"/> is turned off).</summary>
    public static ScheduleFaultInjector Always() => new(static _ => true);

    /// <summary>Whether the injector fails anything; off, every call succeeds (and still counts).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Calls seen.</summary>
    public long CallCount { get { lock (_lock) return _calls; } }

    /// <summary>Calls failed.</summary>
    public long Failures { get { lock (_lock) return _failures; } }

    /// <inheritdoc />
    public bool ShouldFail(int order)
    {
        lock (_lock)
        {
            long call = ++_calls;
            if (!Enabled || !_fails(call))
                return false;
            _failures++;
            return true;
        }
    }
}
