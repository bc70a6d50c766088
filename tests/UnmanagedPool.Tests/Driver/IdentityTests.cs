using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Diagnostics.Tracing;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// Pool identity as netlink <c>page-pool-get</c> reports it (net/core/page_pool_user.c: ifindex, queue,
/// detach-time set by <c>page_pool_detached</c>).
/// </summary>
public unsafe class IdentityTests
{
    [Fact]
    public void Get_stats_carries_the_interface_and_queue_and_no_detach_time_while_alive()
    {
        using var pool = new PagePool(new PagePoolOptions { Interface = "eth7", QueueIndex = 3 });
        PagePoolStats s = pool.GetStats();
        Assert.Equal("eth7", s.Interface);
        Assert.Equal(3, s.QueueIndex);
        Assert.Null(s.DetachTime);
        Assert.Equal("eth7", pool.Interface);
        Assert.Equal(3, pool.QueueIndex);

        using var bare = new PagePool(new PagePoolOptions());
        Assert.Null(bare.GetStats().Interface);
        Assert.Null(bare.GetStats().QueueIndex);
    }

    [Fact]
    public void Page_pool_detached_records_the_time_a_pool_was_disposed_with_pages_in_flight()
    {
        var pool = new PagePool(new PagePoolOptions { Interface = "12", QueueIndex = 0 });
        var page = pool.AllocPage();
        DateTimeOffset before = DateTimeOffset.UtcNow;
        pool.Dispose();
        DateTimeOffset after = DateTimeOffset.UtcNow;
        DateTimeOffset detached = Assert.NotNull(pool.DetachTime);
        Assert.InRange(detached, before.AddMilliseconds(-1), after.AddMilliseconds(1));
        Assert.Equal(detached, pool.GetStats().DetachTime);
        Assert.Equal(0, pool.GetStats().QueueIndex);
        pool.PutPage(page);
        Assert.True(pool.IsFreed);
        Assert.Equal(detached, pool.DetachTime); // stays, as the kernel's detach_time

        var clean = new PagePool(new PagePoolOptions());
        clean.Dispose();
        Assert.True(clean.IsFreed);
        Assert.Null(clean.DetachTime); // nothing in flight: never detached
    }

    [Theory]
    [InlineData("")]
    [InlineData("a-name-too-long-for-ifnamsiz")]
    [InlineData("eth 0")]
    [InlineData("eth/0")]
    [InlineData("eth:0")]
    [InlineData(".")]
    [InlineData("0")]
    [InlineData("99999999999")]
    public void An_invalid_interface_is_refused_at_creation(string name)
    {
        var e = Assert.Throws<ArgumentException>(() => new PagePool(new PagePoolOptions { Interface = name }));
        Assert.Equal(nameof(PagePoolOptions.Interface), e.ParamName);
    }

    [Theory]
    [InlineData("lo")]
    [InlineData("veth-pp0")]
    [InlineData("enp65s0f1np1")]
    [InlineData("1")]
    [InlineData("4096")]
    public void A_name_or_a_positive_index_is_an_interface(string name)
    {
        using var pool = new PagePool(new PagePoolOptions { Interface = name });
        Assert.Equal(name, pool.GetStats().Interface);
    }

    [Fact]
    public void A_negative_queue_index_is_refused_at_creation()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new PagePool(new PagePoolOptions { QueueIndex = -1 }));
        Assert.Equal(nameof(PagePoolOptions.QueueIndex), e.ParamName);
    }

    [Fact]
    public void The_meter_tags_each_measurement_with_interface_queue_and_detach_time()
    {
        var pool = new PagePool(new PagePoolOptions { Name = "id-meter", Interface = "eth3", QueueIndex = 5 });
        var page = pool.AllocPage();
        var tags = Collect(pool.Id);
        Assert.Equal("eth3", tags["pool.interface"]);
        Assert.Equal(5, tags["pool.queue"]);
        Assert.False(tags.ContainsKey("pool.detach_time"));

        pool.Dispose();
        tags = Collect(pool.Id);
        Assert.Equal(pool.DetachTime!.Value.ToUnixTimeSeconds(), tags["pool.detach_time"]);
        pool.PutPage(page);

        using var bare = new PagePool(new PagePoolOptions());
        tags = Collect(bare.Id);
        Assert.False(tags.ContainsKey("pool.interface"));
        Assert.False(tags.ContainsKey("pool.queue"));
    }

    private static Dictionary<string, object?> Collect(long poolId)
    {
        var found = new Dictionary<string, object?>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == PagePoolMeter.MeterName && instrument.Name == "pagepool.pages.inflight")
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            var all = new Dictionary<string, object?>();
            foreach (var tag in tags)
                all[tag.Key] = tag.Value;
            if (all.TryGetValue("pool.id", out object? id) && (long)id! == poolId)
                foreach (var kv in all)
                    found[kv.Key] = kv.Value;
        });
        listener.Start();
        listener.RecordObservableInstruments();
        Assert.True(found.Count > 0, "no measurement for the pool");
        return found;
    }

    private sealed class Listener : EventListener
    {
        public readonly ConcurrentQueue<EventWrittenEventArgs> Events = new();

        public Listener() => EnableEvents(PagePoolEventSource.Log, EventLevel.Informational, PagePoolEventSource.Keywords.Stats);

        protected override void OnEventWritten(EventWrittenEventArgs e) => Events.Enqueue(e);
    }

    [Fact]
    public void The_stats_event_carries_interface_queue_and_detach_time_in_version_one()
    {
        var pool = new PagePool(new PagePoolOptions { Name = "id-events", Interface = "eth9", QueueIndex = 2 });
        using var plain = new PagePool(new PagePoolOptions { Name = "id-events-plain" });
        var page = pool.AllocPage();
        pool.Dispose();
        using (var listener = new Listener())
        {
            PagePoolEventSource.Log.WriteStatsRound();
            EventWrittenEventArgs For(long id) => listener.Events.First(e => e.EventName == "PoolStats" && (long)e.Payload![1]! == id);
            var e = For(pool.Id);
            Assert.Equal(1, e.Version);
            object? Field(EventWrittenEventArgs ev, string name) => ev.Payload![ev.PayloadNames!.IndexOf(name)];
            Assert.Equal("eth9", Field(e, "interfaceName"));
            Assert.Equal(2, Field(e, "queueIndex"));
            Assert.Equal(pool.DetachTime!.Value.ToUnixTimeSeconds(), Field(e, "detachTime"));
            var p = For(plain.Id);
            Assert.Equal("", Field(p, "interfaceName"));
            Assert.Equal(-1, Field(p, "queueIndex"));
            Assert.Equal(0L, Field(p, "detachTime"));
        }
        pool.PutPage(page);
    }
}
