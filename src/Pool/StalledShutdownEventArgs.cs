namespace UnmanagedPool;

/// <summary>Arguments of <see cref="PagePool.StalledShutdownRaised"/>.</summary>
public sealed class StalledShutdownEventArgs(long poolId, long inFlight, long seconds, Exception? releaseError = null) : EventArgs
{
    /// <summary>The pool's id.</summary>
    public long PoolId { get; } = poolId;

    /// <summary>Pages still in flight.</summary>
    public long InFlight { get; } = inFlight;

    /// <summary>Seconds since <see cref="PagePool.Dispose"/>.</summary>
    public long Seconds { get; } = seconds;

    /// <summary>
    /// The last exception a release attempt of the shutdown threw (a DMA mapper's unmap, for instance), or null:
    /// the page whose release threw stays in flight, which may be why the shutdown stalls.
    /// </summary>
    public Exception? ReleaseError { get; } = releaseError;
}
