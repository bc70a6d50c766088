using System.Diagnostics.Metrics;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Observability;

public class PagePoolMeterTests
{
    [Fact]
    public void The_meter_reports_every_instrument_per_pool_tagged_with_id_and_name()
    {
        using var pool = new PagePool(new PagePoolOptions { Name = "meter-test" });
        var consumer = pool.BindConsumer();
        var pages = new NetMemRef[10];
        for (int i = 0; i < pages.Length; i++)
            pages[i] = consumer.AllocPage();
        for (int i = 0; i < 5; i++)
            consumer.RecycleDirect(pages[i]);

        var seen = new Dictionary<string, (long Value, string? Unit, string? Name)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == PagePoolMeter.MeterName)
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            long id = 0;
            string? name = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "pool.id") id = (long)tag.Value!;
                if (tag.Key == "pool.name") name = (string?)tag.Value;
            }
            if (id == pool.Id)
                seen[instrument.Name] = (value, instrument.Unit, name);
        });
        listener.Start();
        listener.RecordObservableInstruments();

        PagePoolStats s = pool.GetStats();
        Assert.Equal(16, seen.Count);
        Assert.All(seen.Values, v => Assert.Equal("meter-test", v.Name));
        Assert.All(seen.Keys, k => Assert.Equal(k.ToLowerInvariant(), k));
        Assert.Equal(s.AllocFast, seen["pagepool.alloc.fast"].Value);
        Assert.Equal(1, seen["pagepool.alloc.slow"].Value);
        Assert.Equal(5, seen["pagepool.recycle.cached"].Value);
        Assert.Equal(64, seen["pagepool.pages.hold"].Value);
        Assert.Equal(64, seen["pagepool.pages.inflight"].Value);
        Assert.Equal("{page}", seen["pagepool.pages.inflight"].Unit);
        Assert.Equal(64L * 4096, seen["pagepool.memory.inflight"].Value);
        Assert.Equal("By", seen["pagepool.memory.pooled"].Unit);
        Assert.Equal(s.Pooled * 4096, seen["pagepool.memory.pooled"].Value);

        for (int i = 5; i < pages.Length; i++)
            consumer.RecycleDirect(pages[i]);
    }
}
