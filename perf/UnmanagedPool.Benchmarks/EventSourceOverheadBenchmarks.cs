using System.Diagnostics.Tracing;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// The fast path (alloc + recycle_direct on the consumer handle) with and without an EventListener attached to
/// <c>UnmanagedPool-PagePool</c> at the default level (Informational, every keyword): the fast path writes no
/// event, so the listener must cost nothing there (target ratio at most 1.05).
/// </summary>
[MemoryDiagnoser]
public class EventSourceOverheadBenchmarks
{
    private const int Ops = 1024;

    private sealed class DefaultLevelListener : EventListener
    {
        public long Count;

        public DefaultLevelListener() => EnableEvents(PagePoolEventSource.Log, EventLevel.Informational);

        protected override void OnEventWritten(EventWrittenEventArgs eventData) => Count++;
    }

    private PagePool _plain = null!;
    private PagePoolConsumer _plainConsumer;
    private PagePool _listened = null!;
    private PagePoolConsumer _listenedConsumer;
    private DefaultLevelListener? _listener;

    [GlobalSetup(Target = nameof(FastPath))]
    public void SetupPlain()
    {
        _plain = new PagePool(new PagePoolOptions());
        _plainConsumer = _plain.BindConsumer();
        _plainConsumer.RecycleDirect(_plainConsumer.AllocPage());
    }

    [GlobalSetup(Target = nameof(FastPathWithListener))]
    public void SetupListened()
    {
        _listener = new DefaultLevelListener();
        _listened = new PagePool(new PagePoolOptions());
        _listenedConsumer = _listened.BindConsumer();
        _listenedConsumer.RecycleDirect(_listenedConsumer.AllocPage());
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _plain?.Dispose();
        _listened?.Dispose();
        _listener?.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Ops)]
    public void FastPath()
    {
        PagePoolConsumer c = _plainConsumer;
        for (int i = 0; i < Ops; i++)
            c.RecycleDirect(c.AllocPage());
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void FastPathWithListener()
    {
        PagePoolConsumer c = _listenedConsumer;
        for (int i = 0; i < Ops; i++)
            c.RecycleDirect(c.AllocPage());
    }
}
