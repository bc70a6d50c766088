using System.Runtime.CompilerServices;

namespace UnmanagedPool.Stress;

/// <summary>
/// xorshift64* (Vigna): a deterministic generator small enough to live in a struct field of each worker, so that
/// drawing a number allocates nothing and needs no lock.
/// </summary>
public struct XorShiftRandom
{
    private ulong _state;

    /// <summary>Seeds the generator; the seed is scrambled by splitmix64 so that seeds 1, 2, 3 diverge at once.</summary>
    public XorShiftRandom(ulong seed)
    {
        _state = SplitMix(seed);
        if (_state == 0)
            _state = 0x9E3779B97F4A7C15UL;
    }

    /// <summary>splitmix64 finaliser: a good 64-bit mix of <paramref name="x"/>.</summary>
    public static ulong SplitMix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>The next 64 random bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Next()
    {
        ulong x = _state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        _state = x;
        return x * 0x2545F4914F6CDD1DUL;
    }

    /// <summary>A number in [0, <paramref name="n"/>) (Lemire's multiply-shift; the bias is negligible here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int NextInt(int n) => (int)(((Next() >> 32) * (ulong)(uint)n) >> 32);

    /// <summary>A number in [0, 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));
}
