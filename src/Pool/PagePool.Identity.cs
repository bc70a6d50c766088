using System.Globalization;

namespace UnmanagedPool;

// Pool identity as netlink page-pool-get reports it (Documentation/netlink/specs/netdev.yaml, net/core/
// page_pool_user.c): the device (ifindex) and queue the pool serves, and detach-time, the moment page_pool_destroy
// left pages in flight (page_pool_detached).
public sealed unsafe partial class PagePool
{
    /// <summary>Longest interface name (the kernel's <c>IFNAMSIZ</c> less its terminator).</summary>
    public const int MaxInterfaceNameLength = 15;

    // UTC ticks of the detach (0 while not detached): written once by Dispose, read by GetStats on any thread.
    private long _detachTicks;

    /// <summary>The interface the pool serves (<see cref="PagePoolOptions.Interface"/>: a name or an index), or null.</summary>
    public string? Interface => Options.Interface;

    /// <summary>The RX queue the pool serves (<see cref="PagePoolOptions.QueueIndex"/>), or null.</summary>
    public int? QueueIndex => Options.QueueIndex;

    /// <summary>
    /// The netlink <c>detach-time</c>: when <see cref="Dispose"/> ran and left pages in flight (the kernel's
    /// <c>page_pool_detached</c>); null while the pool is alive, and for a pool that was freed at once.
    /// </summary>
    public DateTimeOffset? DetachTime
    {
        get
        {
            // Volatile: written by the disposing thread.
            long ticks = Volatile.Read(ref _detachTicks);
            return ticks == 0 ? null : new DateTimeOffset(ticks, TimeSpan.Zero);
        }
    }

    /// <summary>Called by <see cref="Dispose"/> when pages are still in flight after the first release attempt.</summary>
    private void MarkDetached() =>
        // Interlocked: set once; a concurrent GetStats reads it.
        Interlocked.CompareExchange(ref _detachTicks, DateTime.UtcNow.Ticks, 0);

    /// <summary>Validates the identity options, as <c>page_pool_init</c> validates the rest.</summary>
    internal static void ValidateIdentity(PagePoolOptions o)
    {
        if (o.QueueIndex is < 0)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.QueueIndex), o.QueueIndex, "A queue index is 0 or more (null for none).");
        if (o.Interface is { } name && !IsValidInterface(name))
            throw new ArgumentException(
                $"Interface '{name}' is neither a name of 1..{MaxInterfaceNameLength} characters without '/', ':' or white space, nor a positive index.",
                nameof(PagePoolOptions.Interface));
    }

    /// <summary>Whether <paramref name="name"/> is a valid interface name (as <c>dev_valid_name</c>) or a positive index.</summary>
    internal static bool IsValidInterface(string name)
    {
        if (name.Length is 0 or > MaxInterfaceNameLength || name is "." or "..")
            return false;
        if (name.All(char.IsAsciiDigit))
            return int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out int index) && index > 0;
        foreach (char c in name)
        {
            if (c == '/' || c == ':' || char.IsWhiteSpace(c) || char.IsControl(c))
                return false;
        }
        return true;
    }
}
