using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Observability;

public class PagePoolMeterFactoryTests
{
    /// <summary>The pool ids measured on the process-wide meter, read once through a listener of that meter alone.</summary>
    private static HashSet<long> PoolIdsOnTheStaticMeter(string instrumentName)
    {
        var ids = new HashSet<long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, PagePoolMeter.Meter) && instrument.Name == instrumentName)
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
                if (tag.Key == "pool.id")
                    ids.Add((long)tag.Value!);
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return ids;
    }

    private static long PoolId(CollectedMeasurement<long> m) => (long)m.Tags["pool.id"]!;

    [Fact]
    public void A_pool_given_a_meter_factory_is_measured_on_that_factorys_meter_with_the_same_names_and_units()
    {
        using ServiceProvider services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factory = services.GetRequiredService<IMeterFactory>();
        using var pool = new PagePool(new PagePoolOptions { Name = "factory-pool", MeterFactory = factory });
        PagePoolConsumer consumer = pool.BindConsumer();
        NetMemRef page = consumer.AllocPage();

        using var inflight = new MetricCollector<long>(factory, PagePoolMeter.MeterName, "pagepool.pages.inflight");
        using var pooled = new MetricCollector<long>(factory, PagePoolMeter.MeterName, "pagepool.memory.pooled");
        using var fast = new MetricCollector<long>(factory, PagePoolMeter.MeterName, "pagepool.alloc.fast");
        inflight.RecordObservableInstruments();
        pooled.RecordObservableInstruments();
        fast.RecordObservableInstruments();

        Assert.NotNull(inflight.Instrument);
        Assert.Same(factory, inflight.Instrument.Meter.Scope);
        Assert.NotSame(PagePoolMeter.Meter, inflight.Instrument.Meter);
        Assert.Equal("{page}", inflight.Instrument.Unit);
        Assert.Equal("By", pooled.Instrument!.Unit);
        Assert.Equal("{page}", fast.Instrument!.Unit);

        // This factory created one pool: its meter measures that pool alone, whatever other pools live.
        CollectedMeasurement<long> m = Assert.Single(inflight.GetMeasurementSnapshot());
        Assert.Equal(pool.Id, PoolId(m));
        Assert.Equal("factory-pool", m.Tags["pool.name"]);
        Assert.Equal(64, m.Value);
        PagePoolStats stats = pool.GetStats();
        Assert.Equal(stats.Pooled * 4096, Assert.Single(pooled.GetMeasurementSnapshot()).Value);
        Assert.Equal(stats.AllocFast, Assert.Single(fast.GetMeasurementSnapshot()).Value);

        Assert.DoesNotContain(pool.Id, PoolIdsOnTheStaticMeter("pagepool.pages.inflight"));

        consumer.RecycleDirect(page);
    }

    [Fact]
    public void A_pool_without_a_factory_stays_on_the_static_meter_and_each_factory_sees_only_its_own_pools()
    {
        using ServiceProvider servicesA = new ServiceCollection().AddMetrics().BuildServiceProvider();
        using ServiceProvider servicesB = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factoryA = servicesA.GetRequiredService<IMeterFactory>();
        var factoryB = servicesB.GetRequiredService<IMeterFactory>();
        using var a1 = new PagePool(new PagePoolOptions { Name = "a1", MeterFactory = factoryA });
        using var a2 = new PagePool(new PagePoolOptions { Name = "a2", MeterFactory = factoryA });
        using var b = new PagePool(new PagePoolOptions { Name = "b", MeterFactory = factoryB });
        using var plain = new PagePool(new PagePoolOptions { Name = "plain" });

        using var onA = new MetricCollector<long>(factoryA, PagePoolMeter.MeterName, "pagepool.pages.hold");
        using var onB = new MetricCollector<long>(factoryB, PagePoolMeter.MeterName, "pagepool.pages.hold");
        onA.RecordObservableInstruments();
        onB.RecordObservableInstruments();

        Assert.Equal(new[] { a1.Id, a2.Id }.Order(), onA.GetMeasurementSnapshot().Select(PoolId).Order());
        Assert.Equal(b.Id, PoolId(Assert.Single(onB.GetMeasurementSnapshot())));

        HashSet<long> onStatic = PoolIdsOnTheStaticMeter("pagepool.pages.hold");
        Assert.Contains(plain.Id, onStatic);
        Assert.DoesNotContain(a1.Id, onStatic);
        Assert.DoesNotContain(a2.Id, onStatic);
        Assert.DoesNotContain(b.Id, onStatic);
    }

    /// <summary>A factory that makes a new meter on every call, as a factory without a cache would.</summary>
    private sealed class CountingMeterFactory : IMeterFactory
    {
        private readonly List<Meter> _meters = [];

        public int Created => _meters.Count;

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(options.Name, options.Version, options.Tags, scope: this);
            _meters.Add(meter);
            return meter;
        }

        public void Dispose()
        {
            foreach (Meter meter in _meters)
                meter.Dispose();
        }
    }

    [Fact]
    public void A_factory_is_asked_for_one_meter_whatever_the_number_of_pools_it_measures()
    {
        using var factory = new CountingMeterFactory();
        using var first = new PagePool(new PagePoolOptions { MeterFactory = factory });
        using var second = new PagePool(new PagePoolOptions { MeterFactory = factory });

        Assert.Equal(1, factory.Created);
        using var hold = new MetricCollector<long>(factory, PagePoolMeter.MeterName, "pagepool.pages.hold");
        hold.RecordObservableInstruments();
        Assert.Equal(2, hold.GetMeasurementSnapshot().Count);
    }
}
