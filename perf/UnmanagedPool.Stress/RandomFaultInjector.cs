using UnmanagedPool.Native;

namespace UnmanagedPool.Stress;

/// <summary>
/// Makes a seeded fraction of the provider's allocations fail, as the kernel's <c>pp_alloc_fail</c> fault
/// injection does for the page pool's slow path. Deterministic for a given seed and call sequence.
/// </summary>
/// <remarks>The provider calls <see cref="ShouldFail"/> under its lock, so the generator state needs no other guard.</remarks>
public sealed class RandomFaultInjector : IAllocFaultInjector
{
    private XorShiftRandom _random;
    private long _calls;
    private long _failures;

    /// <summary>Creates an injector failing each allocation with probability <paramref name="rate"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="rate"/> is outside [0, 1].</exception>
    public RandomFaultInjector(double rate, ulong seed)
    {
        if (!(rate >= 0 && rate <= 1))
            throw new ArgumentOutOfRangeException(nameof(rate), rate, "A fault rate is between 0 and 1.");
        Rate = rate;
        _random = new XorShiftRandom(seed);
    }

    /// <summary>Probability that one allocation fails.</summary>
    public double Rate { get; }

    /// <summary>Times the provider asked.</summary>
    public long Calls => Volatile.Read(ref _calls);

    /// <summary>Failures injected.</summary>
    public long Failures => Volatile.Read(ref _failures);

    /// <inheritdoc />
    public bool ShouldFail(int order)
    {
        _calls++;
        if (Rate == 0 || _random.NextDouble() >= Rate)
            return false;
        _failures++;
        return true;
    }
}
