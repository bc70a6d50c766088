using System.Collections.Concurrent;
using UnmanagedPool;
using UnmanagedPool.Native;

namespace UnmanagedPool.PoolLoadChild;

/// <summary>
/// Runs page pools under load for a while, for the observability tests and the trace check:
/// <c>dotnet PoolLoadChild.dll [seconds]</c>. A consumer thread allocates more pages than its alloc cache holds
/// (slow path, refill), keeps a standing set in use, recycles most directly, hands some to another thread that
/// puts them through the ring, and releases a few (page state release, then fresh holds). Every half second a
/// short-lived pool is created and destroyed (release events). Prints <c>pid N</c> and <c>ready</c>.
/// <c>--idle [seconds]</c> only waits, without loading the pool library.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 1 && args[0] == "--race")
            return RaceScenarios.Run(args[1]);
        if (args.Length > 0 && args[0] == "--idle")
        {
            // A .NET process that never loads the pool library (PoolStat's "library not loaded" error).
            Console.WriteLine($"pid {Environment.ProcessId}");
            Console.WriteLine("ready");
            Console.Out.Flush();
            Thread.Sleep(TimeSpan.FromSeconds(args.Length > 1 && double.TryParse(args[1], System.Globalization.CultureInfo.InvariantCulture, out double idle) ? idle : 30));
            return 0;
        }
        return RunLoad(args);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static int RunLoad(string[] args)
    {
        double seconds = args.Length > 0 && double.TryParse(args[0], System.Globalization.CultureInfo.InvariantCulture, out double s) ? s : 30;
        var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var handoff = new BlockingCollection<NetMemRef>(new ConcurrentQueue<NetMemRef>(), 4096);
        using var ready = new ManualResetEventSlim();
        PagePool? pool = null;

        var consumer = new Thread(() =>
        {
            pool = new PagePool(new PagePoolOptions { Name = "load-child", PoolSize = 512 });
            PagePoolConsumer c = pool.BindConsumer();
            var standing = new NetMemRef[64];
            for (int i = 0; i < standing.Length; i++)
                standing[i] = c.AllocPage();
            var batch = new NetMemRef[192];
            long round = 0;
            while (!stop.IsCancellationRequested)
            {
                for (int i = 0; i < batch.Length; i++)
                    batch[i] = c.AllocPage();
                for (int i = 0; i < batch.Length; i++)
                {
                    if (batch[i].IsNull)
                        continue;
                    if (i % 16 == 0)
                        pool.ReleasePage(batch[i]);
                    else if (i % 4 == 0 && handoff.TryAdd(batch[i]))
                        continue;
                    else
                        c.RecycleDirect(batch[i]);
                }
                if (++round == 20)
                    ready.Set();
                if (round % 4 == 0)
                    Thread.Sleep(1);
            }
            handoff.CompleteAdding();
            foreach (NetMemRef p in standing)
                c.RecycleDirect(p);
        }) { IsBackground = true, Name = "pool-consumer" };

        var putter = new Thread(() =>
        {
            foreach (NetMemRef page in handoff.GetConsumingEnumerable())
                pool!.PutPage(page);
        }) { IsBackground = true, Name = "pool-putter" };

        var churn = new Thread(() =>
        {
            var pages = new NetMemRef[100];
            while (!stop.IsCancellationRequested)
            {
                using (var shortLived = new PagePool(new PagePoolOptions { Name = "load-child-short" }))
                {
                    PagePoolConsumer c = shortLived.BindConsumer();
                    for (int i = 0; i < pages.Length; i++)
                        pages[i] = c.AllocPage();
                    for (int i = 0; i < pages.Length; i++)
                        c.RecycleDirect(pages[i]);
                }
                stop.Token.WaitHandle.WaitOne(500);
            }
        }) { IsBackground = true, Name = "pool-churn" };

        consumer.Start();
        putter.Start();
        ready.Wait();
        churn.Start();
        Console.WriteLine($"pid {Environment.ProcessId}");
        Console.WriteLine("ready");
        Console.Out.Flush();

        consumer.Join();
        putter.Join();
        churn.Join();
        pool!.Dispose();
        Console.WriteLine("done");
        return 0;
    }
}
