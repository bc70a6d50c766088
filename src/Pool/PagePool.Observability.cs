namespace UnmanagedPool;

// Observability hooks: the first pool created brings up the Meter (PagePoolMeter) so dotnet-counters and
// MeterListeners see the instruments as soon as a pool exists.
public sealed partial class PagePool
{
    partial void OnCreated() => PagePoolMeter.EnsureCreated();
}
