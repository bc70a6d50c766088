namespace UnmanagedPool.Internal;

/// <summary>
/// Trims a pool once it has allocated nothing for <see cref="PagePoolOptions.IdleTrimDelay"/>: a timer, started on
/// the pool's first slow path, checks four times per delay whether the pool's allocation counters moved. Owns its
/// timer, its delay and its idle state; the trimming itself is the pool's (<see cref="PagePool.IdleTrimTick"/>).
/// Cold path: nothing here runs on an allocation or a put.
/// </summary>
internal sealed class IdleTrimmer
{
    private PagePool? _pool;
    private TimeSpan _delay;
    private int _started;           // 0 → 1 once, on the first slow path
    private Timer? _timer;
    // The idle state: read and written only by ShouldTrim, under the pool's trim lock (one tick at a time).
    private long _signature = -1;
    private long _sinceTicks;
    private bool _trimmed;

    /// <summary>Whether <see cref="Start"/> ran (the timer may not exist: no delay set, or already stopped).</summary>
    public bool Started =>
        // Volatile: any thread's slow path tests it before calling Start.
        Volatile.Read(ref _started) != 0;

    /// <summary>Whether the timer is running.</summary>
    public bool Armed =>
        // Volatile: the timer is stored by whichever thread reached the first slow path.
        Volatile.Read(ref _timer) != null;

    /// <summary>Starts the timer once, on the first call from any thread, when the pool's options set a delay.</summary>
    public void Start(PagePool pool)
    {
        // Interlocked: the consumer and other threads may reach their first slow path together; one starts it.
        if (Interlocked.Exchange(ref _started, 1) != 0)
            return;
        if (pool.Options.IdleTrimDelay is not { } delay || delay <= TimeSpan.Zero)
            return;
        _pool = pool;
        _delay = delay;
        // Check four times per delay, so a pool idle for the delay is trimmed within 1.25 delays (arbitrary).
        TimeSpan period = TimeSpan.FromTicks(Math.Max(delay.Ticks / 4, TimeSpan.TicksPerMillisecond));
        _sinceTicks = System.Diagnostics.Stopwatch.GetTimestamp();
        var timer = new Timer(static s => ((IdleTrimmer)s!).Tick(), this, Timeout.Infinite, Timeout.Infinite);
        // Volatile: Stop (Dispose, any thread) reads the timer; the fields above are written before it is published.
        Volatile.Write(ref _timer, timer);
        timer.Change(period, period);
        if (pool.IsDisposed)
            Stop();
    }

    /// <summary>Stops the timer (Dispose). Any thread, any number of times.</summary>
    public void Stop() =>
        // Interlocked: Dispose and a late Start may both stop it; the timer is disposed once.
        Interlocked.Exchange(ref _timer, null)?.Dispose();

    /// <summary>
    /// Under the pool's trim lock, once per tick: true when the pool's allocation <paramref name="signature"/> has
    /// not moved for the delay and the pool was not trimmed since it last moved.
    /// </summary>
    public bool ShouldTrim(long signature, long nowTicks)
    {
        if (signature != _signature)
        {
            _signature = signature;
            _sinceTicks = nowTicks;
            _trimmed = false;
            return false;
        }
        if (_trimmed || System.Diagnostics.Stopwatch.GetElapsedTime(_sinceTicks, nowTicks) < _delay)
            return false;
        _trimmed = true;
        return true;
    }

    /// <summary>
    /// Timer thread. Never throws: a release that throws here (a DMA mapper's unmap) has no caller to reach, so the
    /// pool keeps and reports it (<see cref="PagePool.ReportBackgroundReleaseFailure"/>) and stays usable.
    /// </summary>
    private void Tick()
    {
        PagePool pool = _pool!;
        try
        {
            pool.IdleTrimTick(this);
        }
        catch (Exception e)
        {
            pool.ReportBackgroundReleaseFailure("idle trim", e);
        }
    }
}
