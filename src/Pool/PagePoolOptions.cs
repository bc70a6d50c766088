using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// Parameters of a <see cref="PagePool"/>: the kernel's <c>struct page_pool_params</c>. Validated by the pool's
/// constructor the way <c>page_pool_init</c> validates them.
/// </summary>
public sealed class PagePoolOptions
{
    /// <summary>Default ring size (the kernel drivers' common 1024).</summary>
    public const int DefaultPoolSize = 1024;

    /// <summary>Largest ring size; larger values are clamped.</summary>
    public const int MaxPoolSize = 16384;

    /// <summary>The kernel's <c>pool_size</c>: capacity of the recycling ring; clamped to <see cref="MaxPoolSize"/>.</summary>
    public int PoolSize { get; set; } = DefaultPoolSize;

    /// <summary>The kernel's <c>order</c>: each buffer is 2^Order contiguous 4 KiB pages (0..10).</summary>
    public int Order { get; set; }

    /// <summary>The kernel's <c>flags</c>.</summary>
    public PagePoolFlags Flags { get; set; }

    /// <summary>The kernel's <c>nid</c>: NUMA node for new pages, -1 for none.</summary>
    public int NumaNode { get; set; } = -1;

    /// <summary>The kernel's <c>dma_dir</c>. With <see cref="PagePoolFlags.DmaMap"/>, FromDevice or Bidirectional.</summary>
    public DmaDirection DmaDirection { get; set; } = DmaDirection.FromDevice;

    /// <summary>The kernel's <c>max_len</c>: most bytes synced for the device on recycle (DmaSyncDev).</summary>
    public int MaxLen { get; set; }

    /// <summary>The kernel's <c>offset</c>: where the device starts writing in each page (DmaSyncDev).</summary>
    public int Offset { get; set; }

    /// <summary>The device's mapper (the kernel's <c>dev</c>); <see cref="IdentityDmaMapper"/> when null.</summary>
    public IDmaMapper? DmaMapper { get; set; }

    /// <summary>The kernel's <c>init_callback</c>: called for each page the pool takes from its provider.</summary>
    public Action<NetMemRef, object?>? InitCallback { get; set; }

    /// <summary>The kernel's <c>init_arg</c>, passed to <see cref="InitCallback"/>.</summary>
    public object? InitArg { get; set; }

    /// <summary>A name for statistics, events and tools (the kernel names pools by their netdev and queue).</summary>
    public string? Name { get; set; }

    /// <summary>
    /// Creates the pool's <see cref="System.Diagnostics.Metrics.Meter"/> (named <see cref="PagePoolMeter.MeterName"/>,
    /// one per factory), the ASP.NET Core convention for testable metrics: a pool given a factory is measured on that
    /// factory's meter alone. When null, the pool is measured on the process-wide <see cref="PagePoolMeter.Meter"/>.
    /// </summary>
    public System.Diagnostics.Metrics.IMeterFactory? MeterFactory { get; set; }

    /// <summary>
    /// The interface the pool serves, by name (<c>eth0</c>) or index (<c>3</c>): the kernel's <c>netdev</c>, which
    /// netlink <c>page-pool-get</c> reports as <c>ifindex</c>. Null for none. Carried by
    /// <see cref="PagePool.GetStats"/>, the statistics events, the meter's tags and <c>PoolStat show</c>.
    /// </summary>
    public string? Interface { get; set; }

    /// <summary>The RX queue the pool serves (the kernel's <c>queue_idx</c>), or null for none.</summary>
    public int? QueueIndex { get; set; }

    /// <summary>
    /// The page provider to take pages from; when null the pool creates its own and frees it on final release.
    /// A shared provider lets several pools draw from one set of regions.
    /// </summary>
    public PageProvider? Provider { get; set; }

    /// <summary>
    /// The memory provider to take pages from (the kernel's <c>pool->mp_ops</c>), for instance a shared
    /// <see cref="UmemProvider"/>; when null, <see cref="Provider"/> (or the pool's own region provider) serves.
    /// Only one of the two may be set. The pool never disposes of a provider it was given.
    /// </summary>
    public IMemoryProvider? MemoryProvider { get; set; }

    /// <summary>
    /// Debug checks: the consumer handle verifies its thread on every call, and the debug hooks (poisoning, leak
    /// tracking) run. Defaults to on when the environment variable <c>UNMANAGEDPOOL_DEBUG</c> is 1 or true.
    /// </summary>
    public bool DebugMode { get; set; } = PagePoolEnvironment.DebugFromEnvironment;

    /// <summary>
    /// How thorough debug mode is (used only while <see cref="DebugMode"/> is on; <see cref="PagePoolDebugLevel.Off"/>
    /// then means <see cref="PagePoolDebugLevel.Simple"/>). Setting a level other than Off turns
    /// <see cref="DebugMode"/> on. Defaults to the level <c>UNMANAGEDPOOL_DEBUG</c> asks for ("paranoid" for
    /// <see cref="PagePoolDebugLevel.Paranoid"/>).
    /// </summary>
    public PagePoolDebugLevel DebugLevel
    {
        get => _debugLevel;
        set
        {
            if (!Enum.IsDefined(value))
                throw new ArgumentOutOfRangeException(nameof(DebugLevel), value, "Unknown debug level.");
            _debugLevel = value;
            if (value != PagePoolDebugLevel.Off)
                DebugMode = true;
        }
    }

    private PagePoolDebugLevel _debugLevel = PagePoolEnvironment.DebugLevelFromEnvironment;

    /// <summary>
    /// Pages kept in the ring and caches when the pool trims (<see cref="PagePool.Trim"/>, idle trimming); pages
    /// above it are given back to the provider. Default <see cref="DefaultLowWaterMark"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to a negative value.</exception>
    public int LowWaterMark
    {
        get => _lowWaterMark;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value, nameof(LowWaterMark));
            _lowWaterMark = value;
        }
    }

    private int _lowWaterMark = DefaultLowWaterMark;

    /// <summary>Default <see cref="LowWaterMark"/>: one alloc cache's worth of pages (arbitrary).</summary>
    public const int DefaultLowWaterMark = 128;

    /// <summary>
    /// After this long with no allocation the pool trims itself down to <see cref="LowWaterMark"/> and, when it owns
    /// its provider, gives empty regions back to the OS. Null or zero: never trim on its own (the default).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to a negative value, or to more than <see cref="MaxIdleTrimDelay"/>.</exception>
    public TimeSpan? IdleTrimDelay
    {
        get => _idleTrimDelay;
        set
        {
            if (value is { } v && v < TimeSpan.Zero)
                throw new ArgumentOutOfRangeException(nameof(IdleTrimDelay), value, "The idle delay cannot be negative.");
            if (value is { } w && w > MaxIdleTrimDelay)
                throw new ArgumentOutOfRangeException(nameof(IdleTrimDelay), value, $"The idle delay is at most {MaxIdleTrimDelay} (the idle check runs every quarter delay on a timer).");
            _idleTrimDelay = value;
        }
    }

    /// <summary>
    /// The longest <see cref="IdleTrimDelay"/>: the pool checks for idleness four times per delay, and a
    /// <see cref="Timer"/> period is at most 0xFFFFFFFE ms, so about 198 days.
    /// </summary>
    public static readonly TimeSpan MaxIdleTrimDelay = TimeSpan.FromTicks(4 * 0xFFFF_FFFEL * TimeSpan.TicksPerMillisecond);

    private TimeSpan? _idleTrimDelay;

    /// <summary>
    /// Most bytes of pages the pool holds at once (in flight with users and pooled: <c>InFlight * BufferSize</c>);
    /// past it the slow path allocates nothing and <see cref="PagePool.AllocPage"/> returns
    /// <see cref="NetMemRef.Null"/>, counted in <see cref="PagePoolStats.AllocOverLimit"/>. 0 for no limit.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to a negative value.</exception>
    public long MemoryLimit
    {
        get => _memoryLimit;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value, nameof(MemoryLimit));
            _memoryLimit = value;
        }
    }

    private long _memoryLimit;

    /// <summary>
    /// Validates the options as <c>page_pool_init</c> does (flags, order, provider, ring size, node, DMA direction and
    /// sync, <see cref="MaxLen"/> and <see cref="Offset"/>, identity); throws on the first that is wrong.
    /// </summary>
    internal void Validate()
    {
        PagePoolOptions o = this;
        if ((o.Flags & ~PagePoolFlags.All) != 0)
            throw new ArgumentException($"Unknown flag bits 0x{(int)(o.Flags & ~PagePoolFlags.All):x}.", nameof(PagePoolOptions.Flags));
        if (o.Order is < 0 or > PageConstants.MaxOrder)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.Order), o.Order, $"Order must be 0..{PageConstants.MaxOrder}.");
        if (o.MemoryProvider != null && o.Provider != null)
            throw new ArgumentException("Set either Provider or MemoryProvider, not both.", nameof(PagePoolOptions.MemoryProvider));
        if (o.PoolSize < 1)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.PoolSize), o.PoolSize, "The ring needs at least one slot.");
        if (o.NumaNode is < -1 or > 63)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.NumaNode), o.NumaNode, "A NUMA node is -1 or 0..63.");
        if (!Enum.IsDefined(o.DmaDirection))
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.DmaDirection), o.DmaDirection, "Unknown DMA direction.");
        if ((o.Flags & PagePoolFlags.DmaMap) != 0 && o.DmaDirection is not (DmaDirection.FromDevice or DmaDirection.Bidirectional))
            throw new ArgumentException("DmaMap needs DmaDirection FromDevice or Bidirectional (a pool's pages are written by the device).", nameof(PagePoolOptions.DmaDirection));
        if ((o.Flags & PagePoolFlags.DmaSyncDev) != 0)
        {
            if ((o.Flags & PagePoolFlags.DmaMap) == 0)
                throw new ArgumentException("DmaSyncDev needs DmaMap: only mapped pages can be synced.", nameof(PagePoolOptions.Flags));
            if (o.MaxLen <= 0)
                throw new ArgumentException("DmaSyncDev needs MaxLen > 0.", nameof(PagePoolOptions.MaxLen));
        }
        int size = PageConstants.PageSize << Math.Clamp(o.Order, 0, PageConstants.MaxOrder);
        if (o.MaxLen < 0 || o.MaxLen > size)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.MaxLen), o.MaxLen, $"MaxLen must be 0..{size}.");
        if (o.Offset < 0 || o.Offset >= size || (long)o.Offset + o.MaxLen > size)
            throw new ArgumentOutOfRangeException(nameof(PagePoolOptions.Offset), o.Offset, $"Offset + MaxLen must fit in the {size}-byte buffer.");
        PagePool.ValidateIdentity(o);
    }

    /// <summary>Returns a shallow copy.</summary>
    public PagePoolOptions Clone() => (PagePoolOptions)MemberwiseClone();
}

/// <summary>Settings read from the environment once per process.</summary>
internal static class PagePoolEnvironment
{
    /// <summary>Name of the variable that turns debug mode on without rebuilding.</summary>
    public const string DebugVariable = "UNMANAGEDPOOL_DEBUG";

    /// <summary>Whether <see cref="DebugVariable"/> asks for debug mode (1, true, yes or on).</summary>
    public static bool DebugFromEnvironment { get; } = Environment.GetEnvironmentVariable(DebugVariable) is { } v &&
        (v == "1" || v.Equals("true", StringComparison.OrdinalIgnoreCase) || v.Equals("yes", StringComparison.OrdinalIgnoreCase) || v.Equals("on", StringComparison.OrdinalIgnoreCase)
         || v.Equals("paranoid", StringComparison.OrdinalIgnoreCase));

    /// <summary>The debug level <see cref="DebugVariable"/> asks for: see <see cref="ParseDebugLevel"/>.</summary>
    public static PagePoolDebugLevel DebugLevelFromEnvironment { get; } = ParseDebugLevel(Environment.GetEnvironmentVariable(DebugVariable));

    /// <summary>
    /// Reads a value of <see cref="DebugVariable"/>: "paranoid" (or "2") is <see cref="PagePoolDebugLevel.Paranoid"/>;
    /// 1, true, yes, on or simple is <see cref="PagePoolDebugLevel.Simple"/>; anything else (or null) is Off.
    /// </summary>
    public static PagePoolDebugLevel ParseDebugLevel(string? value)
    {
        if (value is null)
            return PagePoolDebugLevel.Off;
        value = value.Trim();
        if (value == "2" || value.Equals("paranoid", StringComparison.OrdinalIgnoreCase))
            return PagePoolDebugLevel.Paranoid;
        if (value == "1" || value.Equals("true", StringComparison.OrdinalIgnoreCase) || value.Equals("yes", StringComparison.OrdinalIgnoreCase)
            || value.Equals("on", StringComparison.OrdinalIgnoreCase) || value.Equals("simple", StringComparison.OrdinalIgnoreCase))
            return PagePoolDebugLevel.Simple;
        return PagePoolDebugLevel.Off;
    }
}
