using System.Diagnostics;
using UnmanagedPool;
using UnmanagedPool.Native;

// Resident memory of a pool that trims itself when idle: under load, and for 30 s after the load stops.
// Usage: dotnet run -c Release --project perf/UnmanagedPool.RssScenario -- [loadSeconds] [idleSeconds] [pagesInFlight]
int loadSeconds = args.Length > 0 ? int.Parse(args[0]) : 10;
int idleSeconds = args.Length > 1 ? int.Parse(args[1]) : 30;
int burst = args.Length > 2 ? int.Parse(args[2]) : 32768;
const int lowWater = 1024;

static long RssKiB()
{
    foreach (string line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim());
    return -1;
}

long baseline = RssKiB();
var pool = new PagePool(new PagePoolOptions
{
    PoolSize = PagePoolOptions.MaxPoolSize,
    LowWaterMark = lowWater,
    IdleTrimDelay = TimeSpan.FromSeconds(2),
});
var consumer = pool.BindConsumer();
var pages = new NetMemRef[burst];
// Two long-lived threads put each burst back (other threads: per-CPU caches and the ring).
int gotPages = 0;
bool stop = false;
var start = new Barrier(3);
var done = new Barrier(3);
for (int w = 0; w < 2; w++)
{
    int worker = w;
    new Thread(() =>
    {
        while (true)
        {
            start.SignalAndWait();
            if (Volatile.Read(ref stop))
                return;
            int n = Volatile.Read(ref gotPages), half = n / 2;
            for (int i = worker == 0 ? 0 : half; i < (worker == 0 ? half : n); i++)
                pool.PutPage(pages[i]);
            done.SignalAndWait();
        }
    }) { IsBackground = true }.Start();
}
GC.Collect();
baseline = RssKiB();
var sw = Stopwatch.StartNew();
long peak = 0, rounds = 0;
Console.WriteLine($"baseline RSS {baseline / 1024.0:F1} MiB; load: bursts of {burst} pages ({burst * 4096L >> 20} MiB) in flight, put back by 2 threads; low-water mark {lowWater} pages ({lowWater * 4096L >> 20} MiB), idle delay 2 s");
while (sw.Elapsed < TimeSpan.FromSeconds(loadSeconds))
{
    int got = consumer.AllocPages(pages);
    for (int i = 0; i < got; i++)
        pages[i].AsSpan()[i & 4095] = (byte)i;           // touch: the page becomes resident
    peak = Math.Max(peak, RssKiB());
    gotPages = got;
    start.SignalAndWait();   // the two workers put half each
    done.SignalAndWait();
    rounds++;
}
Volatile.Write(ref stop, true);
start.SignalAndWait();
PagePoolStats s = pool.GetStats();
long atStop = RssKiB();
Console.WriteLine($"load: {rounds} rounds; peak RSS {peak / 1024.0:F1} MiB, at stop {atStop / 1024.0:F1} MiB; pooled {s.Pooled}, inflight {s.InFlight}, provider {pool.Provider.BytesReserved >> 20} MiB in {pool.Provider.RegionCount} regions");
for (int sec = 1; sec <= idleSeconds; sec++)
{
    Thread.Sleep(1000);
    s = pool.GetStats();
    if (sec is 1 or 2 or 3 or 5 or 10 or 20 or 30 || sec == idleSeconds)
        Console.WriteLine($"+{sec,2} s idle: RSS {RssKiB() / 1024.0:F1} MiB (baseline + {(RssKiB() - baseline) / 1024.0:F1} MiB); pooled {s.Pooled}, inflight {s.InFlight}, trimmed {s.Trimmed}, provider {pool.Provider.BytesReserved / 1024.0 / 1024:F1} MiB in {pool.Provider.RegionCount} regions");
}
long before = RssKiB();
pool.Trim(); // the consumer's own trim: its alloc cache too
s = pool.GetStats();
Console.WriteLine($"after Trim() on the consumer thread: RSS {RssKiB() / 1024.0:F1} MiB (was {before / 1024.0:F1}); pooled {s.Pooled}, provider {pool.Provider.BytesReserved / 1024.0 / 1024:F1} MiB in {pool.Provider.RegionCount} regions");
pool.Dispose();
if (Environment.GetEnvironmentVariable("RSS_SMAPS") == "1")
{
    string? range = null;
    foreach (string line in File.ReadLines("/proc/self/smaps"))
    {
        if (char.IsAsciiHexDigit(line[0]) && line.Contains('-'))
            range = line;
        else if (line.StartsWith("Rss:", StringComparison.Ordinal) && long.Parse(line.AsSpan(4).Trim().TrimEnd("kB").Trim()) > 2048)
            Console.WriteLine($"{line.Trim()}  {range}");
    }
}
