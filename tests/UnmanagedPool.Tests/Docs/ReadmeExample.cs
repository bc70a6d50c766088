using UnmanagedPool;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Docs;

/// <summary>
/// The README's library example less its <c>using</c> lines, compiled here without unsafe code; a test checks the
/// README shows this text, and the packaging test builds the README's block as its own program.
/// </summary>
public static class ReadmeExample
{
    public static PagePoolStats Run()
    {
// README:begin
using var pool = new PagePool(new PagePoolOptions { PoolSize = 1024, Name = "eth0-rx0" });
PagePoolConsumer rx = pool.BindConsumer();      // this thread is the pool's NAPI context

NetMemRef page = rx.AllocPage();                // page_pool_alloc_pages: alloc cache, ring, then provider
if (page.IsNull)
    throw new OutOfMemoryException();
Span<byte> frame = page.AsSpan();               // 4096 bytes of native memory
frame[..6].Fill(0xff);
rx.RecycleDirect(page);                         // page_pool_recycle_direct: back into the alloc cache

NetMemRef other = rx.AllocPage();
var worker = new Thread(() => pool.PutPage(other));            // any thread: per-CPU cache, then the ring
worker.Start();
worker.Join();

PagePoolStats stats = pool.GetStats();          // page_pool_get_stats
Console.WriteLine($"fast {stats.AllocFast} slow {stats.AllocSlow} cached {stats.RecycleCached} " +
                  $"ring {stats.RecycleRing} inflight {stats.InFlight}");
// README:end
        return stats;
    }
}
