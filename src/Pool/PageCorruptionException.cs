namespace UnmanagedPool;

/// <summary>
/// Debug mode found a page whose poison changed while it sat in the pool: someone wrote to it after putting it
/// back (a use after free). The page has been taken out of circulation.
/// </summary>
public sealed class PageCorruptionException : InvalidOperationException
{
    /// <summary>Creates the exception for the page at <paramref name="pageAddress"/>.</summary>
    /// <param name="poolId">The pool's id.</param>
    /// <param name="pageAddress">First byte of the page.</param>
    /// <param name="offset">Offset of the first byte that differs from the poison.</param>
    /// <param name="found">The byte found there.</param>
    /// <param name="putStack">Where the page was put, when debug mode captured it; else null.</param>
    public PageCorruptionException(long poolId, nint pageAddress, int offset, byte found, string? putStack)
        : base(Format(poolId, pageAddress, offset, found, putStack))
    {
        PoolId = poolId;
        PageAddress = pageAddress;
        Offset = offset;
        Found = found;
        PutStack = putStack;
    }

    /// <summary>The pool's id.</summary>
    public long PoolId { get; }

    /// <summary>First byte of the corrupted page.</summary>
    public nint PageAddress { get; }

    /// <summary>Offset in the page of the first byte that differs from the poison.</summary>
    public int Offset { get; }

    /// <summary>The byte found at <see cref="Offset"/>.</summary>
    public byte Found { get; }

    /// <summary>The stack of the put that poisoned the page, when stacks were captured (paranoid level); else null.</summary>
    public string? PutStack { get; }

    private static string Format(long poolId, nint address, int offset, byte found, string? putStack)
    {
        string text = $"PagePool {poolId}: page 0x{address:x} was written after it was put back: byte at offset {offset} " +
                      $"(0x{address + offset:x}) is 0x{found:x2}, poison is 0x{PagePool.PoisonFree:x2}.";
        return putStack is null
            ? text + " Use debug level Paranoid to capture where it was put."
            : text + " It was put at:" + Environment.NewLine + putStack;
    }
}

/// <summary>Arguments of <see cref="PagePool.CorruptionDetected"/>.</summary>
public sealed class PageCorruptionEventArgs(PageCorruptionException corruption, bool thrown) : EventArgs
{
    /// <summary>What was found.</summary>
    public PageCorruptionException Corruption { get; } = corruption;

    /// <summary>
    /// True when the exception is thrown to the allocating caller; false when the corruption was found as the
    /// page left the pool (release, trim, destroy), where nothing is thrown.
    /// </summary>
    public bool Thrown { get; } = thrown;
}

/// <summary>A page handed out by a pool in debug mode and not yet put back, with where it was allocated.</summary>
/// <param name="Address">First byte of the page.</param>
/// <param name="ThreadId">Managed id of the allocating thread.</param>
/// <param name="Age">Time since the allocation.</param>
/// <param name="AllocationStack">The allocation's stack.</param>
public readonly record struct PageLeakRecord(nint Address, int ThreadId, TimeSpan Age, string AllocationStack);
