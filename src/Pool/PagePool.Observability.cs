namespace UnmanagedPool;

// Observability hooks: the first pool created brings up its Meter (PagePoolMeter: the static one, or the one of
// the pool's IMeterFactory) so dotnet-counters and MeterListeners see the instruments as soon as a pool exists.
public sealed partial class PagePool
{
    partial void OnCreated() => PagePoolMeter.EnsureCreated(Options.MeterFactory);
}
