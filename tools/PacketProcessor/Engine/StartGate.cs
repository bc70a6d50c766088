namespace PacketProcessor.Engine;

/// <summary>
/// Where the processor's threads wait before their measured windows: opened once, from another thread. Waiting
/// spins and sleeps without allocating (a blocking event would create its wait handle on the first waiter).
/// </summary>
internal sealed class StartGate
{
    private volatile bool _open; // volatile: set by the processor's thread, read by every waiting thread

    /// <summary>Lets every waiting thread go.</summary>
    public void Open() => _open = true;

    /// <summary>Returns once <see cref="Open"/> was called.</summary>
    public void Wait()
    {
        var spin = new SpinWait();
        while (!_open)
            spin.SpinOnce();
    }
}
