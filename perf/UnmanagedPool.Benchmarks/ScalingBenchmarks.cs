using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using UnmanagedPool.Native;

namespace UnmanagedPool.Benchmarks;

/// <summary>
/// Throughput against threads. <see cref="PerThreadPools"/> (baseline): each of <see cref="Threads"/> threads is
/// the consumer of its own pool and runs the fast path. <see cref="ProducersToOneConsumer"/>: one consumer
/// allocates and hands pages to <see cref="Threads"/> producer threads, which put them back to the consumer's
/// pool from their own threads (per-CPU cache and ring), as RX pages freed on other CPUs. The reported time is
/// per page per thread; throughput = Threads × OperationsPerInvoke / time.
/// </summary>
[MemoryDiagnoser]
public class ScalingBenchmarks
{
    /// <summary>Pages per thread per invocation.</summary>
    public const int PerThread = 16_384;

    private ThreadGang? _gang;
    private PagePool? _pool;
    private PagePoolConsumer? _consumer;
    private SpscQueue[] _queues = [];

    [ParamsSource(nameof(ThreadCounts))]
    public int Threads { get; set; }

    /// <summary>1, 2, 4, ... up to the processor count (and the processor count itself).</summary>
    public static IEnumerable<int> ThreadCounts()
    {
        int max = Environment.ProcessorCount;
        var list = new List<int>();
        for (int t = 1; t < max; t *= 2)
            list.Add(t);
        list.Add(max);
        return list;
    }

    // ---------------------------------------------------------------------------------------------
    // Per-thread pools
    // ---------------------------------------------------------------------------------------------

    [GlobalSetup(Target = nameof(PerThreadPools))]
    public void SetupPerThread()
    {
        _gang = new ThreadGang(Threads, static _ =>
        {
            var pool = new PagePool(new PagePoolOptions { Name = "bench-scaling" });
            PagePoolConsumer c = pool.BindConsumer();
            return () =>
            {
                for (int i = 0; i < PerThread; i++)
                    c.RecycleDirect(c.AllocPage());
            };
        });
    }

    [GlobalCleanup(Target = nameof(PerThreadPools))]
    public void CleanupPerThread() => _gang?.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = PerThread)]
    public void PerThreadPools() => _gang!.RunOnce();

    // ---------------------------------------------------------------------------------------------
    // N producers → one consumer's pool
    // ---------------------------------------------------------------------------------------------

    [GlobalSetup(Target = nameof(ProducersToOneConsumer))]
    public void SetupProducers()
    {
        _pool = new PagePool(new PagePoolOptions { PoolSize = 4096, Name = "bench-producers" });
        _consumer = _pool.BindConsumer();
        PagePool pool = _pool;
        _queues = new SpscQueue[Threads];
        for (int i = 0; i < Threads; i++)
            _queues[i] = new SpscQueue(1024);
        SpscQueue[] queues = _queues;
        _gang = new ThreadGang(Threads, index => () =>
        {
            SpscQueue q = queues[index];
            var spin = new SpinWait();
            for (int done = 0; done < PerThread;)
            {
                if (q.TryDequeue(out NetMemRef page))
                {
                    pool.PutPage(page);
                    done++;
                    spin = default;
                }
                else
                {
                    spin.SpinOnce(sleep1Threshold: -1);
                }
            }
        });
    }

    [GlobalCleanup(Target = nameof(ProducersToOneConsumer))]
    public void CleanupProducers()
    {
        _gang?.Dispose();
        _pool?.Dispose();
    }

    [Benchmark(OperationsPerInvoke = PerThread)]
    public void ProducersToOneConsumer()
    {
        ThreadGang gang = _gang!;
        gang.Start();
        PagePoolConsumer c = _consumer!.Value;
        SpscQueue[] queues = _queues;
        int total = PerThread * queues.Length;
        var spin = new SpinWait();
        for (int i = 0; i < total;)
        {
            SpscQueue q = queues[i % queues.Length];
            if (!q.CanEnqueue)
            {
                spin.SpinOnce(sleep1Threshold: -1);
                continue;
            }
            spin = default;
            NetMemRef page = c.AllocPage();
            q.Enqueue(page);
            i++;
        }
        gang.WaitDone();
    }

    /// <summary>Threads that each run their action once per <see cref="RunOnce"/>, started together.</summary>
    private sealed class ThreadGang : IDisposable
    {
        private readonly Thread[] _threads;
        private readonly Action[] _work;
        private readonly SemaphoreSlim _start = new(0);
        private readonly CountdownEvent _done;
        private volatile bool _stop;

        public ThreadGang(int count, Func<int, Action> setupOnThread)
        {
            _threads = new Thread[count];
            _work = new Action[count];
            _done = new CountdownEvent(count);
            using var ready = new CountdownEvent(count);
            for (int i = 0; i < count; i++)
            {
                int index = i;
                _threads[i] = new Thread(() =>
                {
                    _work[index] = setupOnThread(index);
                    ready.Signal();
                    while (true)
                    {
                        _start.Wait();
                        if (_stop)
                            return;
                        _work[index]();
                        _done.Signal();
                    }
                })
                { IsBackground = true, Name = $"bench-{i}" };
                _threads[i].Start();
            }
            ready.Wait();
        }

        public void Start()
        {
            _done.Reset();
            _start.Release(_threads.Length);
        }

        public void WaitDone() => _done.Wait();

        public void RunOnce()
        {
            Start();
            WaitDone();
        }

        public void Dispose()
        {
            _stop = true;
            _start.Release(_threads.Length);
            foreach (Thread t in _threads)
                t.Join();
        }
    }

    /// <summary>A bounded single-producer single-consumer queue of pages.</summary>
    private sealed class SpscQueue(int capacity)
    {
        private readonly NetMemRef[] _items = new NetMemRef[capacity];
        private Indexes _ix;

        /// <summary>Head (consumer side) and tail (producer side) on separate cache lines.</summary>
        [StructLayout(LayoutKind.Explicit, Size = 192)]
        private struct Indexes
        {
            [FieldOffset(64)] public long Head;
            [FieldOffset(128)] public long Tail;
        }

        public bool CanEnqueue => _ix.Tail - Volatile.Read(ref _ix.Head) < _items.Length;

        public void Enqueue(NetMemRef page)
        {
            long t = _ix.Tail;
            _items[t % _items.Length] = page;
            // Volatile (release): the item is written before the consumer can see the new tail.
            Volatile.Write(ref _ix.Tail, t + 1);
        }

        public bool TryDequeue(out NetMemRef page)
        {
            long h = _ix.Head;
            // Volatile (acquire): pairs with the release in Enqueue.
            if (h == Volatile.Read(ref _ix.Tail))
            {
                page = default;
                return false;
            }
            page = _items[h % _items.Length];
            // Volatile (release): the slot is read before the producer may reuse it.
            Volatile.Write(ref _ix.Head, h + 1);
            return true;
        }
    }
}
