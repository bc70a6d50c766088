using System.Collections.Concurrent;

namespace UnmanagedPool.Stress;

/// <summary>The names of the invariants the harness checks; each appears verbatim in the report.</summary>
public static class ViolationNames
{
    /// <summary>A page handed out while a user still held it (the ownership bitmap's bit was already set).</summary>
    public const string DoubleHandOut = "double-hand-out";

    /// <summary>A page given back whose owner cookie was not the one its holder wrote.</summary>
    public const string CookieMismatch = "cookie-mismatch";

    /// <summary>A page given back that the ownership bitmap did not show as held.</summary>
    public const string ReturnedNotHeld = "returned-not-held";

    /// <summary>The pool threw on an operation the harness made correctly.</summary>
    public const string PoolException = "pool-exception";

    /// <summary>A pool not back to InFlight 0 (or not freed) after Dispose and the return of every page.</summary>
    public const string InFlightNotZero = "inflight-not-zero";

    /// <summary>A pool's counters disagree with the operations the harness made, or with each other.</summary>
    public const string CountersInconsistent = "counters-inconsistent";

    /// <summary>The page provider still has pages in use after every pool was freed.</summary>
    public const string ProviderLeak = "provider-leak";

    /// <summary>An allocation returned null with no fault injected.</summary>
    public const string UnexpectedAllocFailure = "unexpected-alloc-failure";
}

/// <summary>Collects invariant violations from any thread: a count per name and the first few messages.</summary>
public sealed class ViolationLog
{
    private const int MaxMessages = 20;
    private readonly ConcurrentDictionary<string, long> _counts = new();
    private readonly ConcurrentQueue<string> _messages = new();
    private int _messageCount;
    private int _any;

    /// <summary>Whether any violation has been recorded.</summary>
    public bool Any => Volatile.Read(ref _any) != 0;

    /// <summary>Violations recorded per name.</summary>
    public IReadOnlyDictionary<string, long> Counts => _counts;

    /// <summary>The first messages recorded.</summary>
    public IEnumerable<string> Messages => _messages;

    /// <summary>Records a violation of <paramref name="name"/> (cold path: may allocate).</summary>
    public void Report(string name, string message)
    {
        _counts.AddOrUpdate(name, 1, static (_, n) => n + 1);
        // Interlocked: several workers may report at once; the first MaxMessages keep their text.
        if (Interlocked.Increment(ref _messageCount) <= MaxMessages)
            _messages.Enqueue($"{name}: {message}");
        // Volatile: workers poll Any to stop early.
        Volatile.Write(ref _any, 1);
    }

    /// <summary>Count recorded for <paramref name="name"/>.</summary>
    public long CountOf(string name) => _counts.TryGetValue(name, out long n) ? n : 0;
}
