namespace UnmanagedPool.Native;

/// <summary>Cache geometry used to keep independently written data apart.</summary>
public static class Padding
{
    /// <summary>
    /// Bytes that separate two hot fields written by different threads. 128 rather than 64: adjacent-line
    /// prefetch on x86 pulls pairs of lines, so 64 would still let two cores fight over one pair (arbitrary, as
    /// dotnet/runtime and Disruptor choose).
    /// </summary>
    public const int CacheLineSize = 128;
}
