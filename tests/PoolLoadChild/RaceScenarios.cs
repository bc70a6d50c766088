using System.Diagnostics.Tracing;
using System.Reflection;
using UnmanagedPool;
using UnmanagedPool.Native;

namespace UnmanagedPool.PoolLoadChild;

/// <summary>
/// Lifecycle scenarios that end the process when the library gets them wrong (an access violation, an exception
/// on a timer thread), run in a process of their own: <c>dotnet PoolLoadChild.dll --race NAME</c>. Each prints
/// <c>ok: ...</c> and exits 0 when the library handled it, or prints what went wrong and exits 1.
/// </summary>
internal static unsafe class RaceScenarios
{
    public static int Run(string name)
    {
        Console.WriteLine($"pid {Environment.ProcessId}");
        Console.Out.Flush();
        return name switch
        {
            "idle-trim-unmap-throws" => IdleTrimUnmapThrows(),
            "from-address-vs-dispose" => FromAddressVersusDispose(),
            "stale-ref-packet-free" => StaleRefPacketFree(),
            "frag-put-dispose" => FragPutDispose(),
            _ => Fail("unknown scenario " + name),
        };
    }

    private static int Fail(string why)
    {
        Console.WriteLine("fail: " + why);
        return 1;
    }

    /// <summary>
    /// Issue case 2: a DmaMap pool whose mapper's Unmap throws, pages pooled from another thread, the idle-trim
    /// timer set: the timer's trim meets the throwing unmap. The process must live, and the failure be reported.
    /// </summary>
    private static int IdleTrimUnmapThrows()
    {
        using var listener = new FailureListener();
        var pool = new PagePool(new PagePoolOptions
        {
            Name = "idle-unmap-throws",
            Flags = PagePoolFlags.DmaMap,
            DmaMapper = new UnmapThrowsMapper(),
            IdleTrimDelay = TimeSpan.FromMilliseconds(40),
            LowWaterMark = 0,
        });
        var pages = new NetMemRef[32];
        for (int i = 0; i < pages.Length; i++)
            pages[i] = pool.AllocPage();
        var putter = new Thread(() => pool.PutPages(pages));
        putter.Start();
        putter.Join();
        // The timer trims once the pool has been idle for the delay; its release meets the throwing unmap.
        if (!listener.Seen.Wait(TimeSpan.FromSeconds(20)))
            return Fail("no idle-trim failure was reported within 20 s");
        Console.WriteLine($"ok: idle trim failure reported ({listener.Message}), in flight {pool.InFlight}");
        return 0;
    }

    /// <summary>
    /// Issue case 3, made deterministic: <see cref="NetMemRef.FromAddress(void*)"/> is a registry lookup followed
    /// by a read of the descriptor it found. Here the lookup runs, the pool (and with it its region) is disposed,
    /// then the descriptor is read, which is the interleaving a racing thread can hit.
    /// </summary>
    private static int FromAddressVersusDispose()
    {
        // RegionRegistry.Lookup is the first half of FromAddress; reached by reflection because it is internal.
        MethodInfo lookup = typeof(PageRegion).Assembly.GetType("UnmanagedPool.Native.RegionRegistry", throwOnError: true)!
            .GetMethod("Lookup", BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)!;
        var lookupFn = (delegate*<nuint, NetMem*>)lookup.MethodHandle.GetFunctionPointer();

        var pool = new PagePool(new PagePoolOptions { Name = "from-address" });
        NetMemRef page = pool.AllocPage();
        byte* address = page.Address + 100;
        pool.PutPage(page);
        NetMem* slot = lookupFn((nuint)address);
        if (slot == null || slot != page.Descriptor)
            return Fail("the lookup did not find the page");
        pool.Dispose();
        if (!pool.IsFreed)
            return Fail("the pool was not freed");
        // The second half of FromAddress, after the region's end.
        PageState state = new NetMemRef(slot).State;
        bool isPp = new NetMemRef(slot).IsPagePool;
        if (NetMemRef.FromAddress(address) != NetMemRef.Null)
            return Fail("FromAddress found a page of a freed region");

        // And the race itself, for a while: one thread resolves addresses while pools come and go.
        int rounds = 200;
        for (int r = 0; r < rounds; r++)
        {
            var p = new PagePool(new PagePoolOptions { Name = "from-address-race" });
            NetMemRef pg = p.AllocPage();
            nint a = (nint)pg.Address + 8;
            p.PutPage(pg);
            using var go = new ManualResetEventSlim();
            bool stop = false;
            var resolver = new Thread(() =>
            {
                go.Set();
                while (!Volatile.Read(ref stop))
                {
                    NetMemRef m = NetMemRef.FromAddress(a);
                    if (!m.IsNull)
                        _ = m.IsPagePool;
                }
            });
            resolver.Start();
            go.Wait();
            p.Dispose();
            Volatile.Write(ref stop, true);
            resolver.Join();
        }
        Console.WriteLine($"ok: stale slot read state {state}, pp {isPp}; {rounds} racing rounds");
        return 0;
    }

    /// <summary>
    /// Issue case 4: a packet still holds a page after its pool (with a provider of its own) has ended and freed
    /// the region. Free must refuse the page with an exception.
    /// </summary>
    private static int StaleRefPacketFree()
    {
        var pool = new PagePool(new PagePoolOptions { Name = "stale-ref" });
        NetMemRef page = pool.AllocPage();
        var packet = new Packet();
        packet.AddFrag(page, 0, 100);
        packet.MarkForRecycle();
        // The user gives the page back behind the packet's back; the pool ends and frees its region.
        pool.PutPage(page);
        pool.Dispose();
        if (!pool.IsFreed)
            return Fail("the pool was not freed");
        try
        {
            packet.Free();
        }
        catch (InvalidOperationException e)
        {
            Console.WriteLine("ok: refused: " + e.Message);
            return 0;
        }
        return Fail("Free accepted a page of a freed pool");
    }

    private sealed class UnmapThrowsMapper : IDmaMapper
    {
        public bool Map(void* address, nuint size, DmaDirection direction, out ulong dmaAddress)
        {
            dmaAddress = (ulong)address;
            return true;
        }

        public void Unmap(ulong dmaAddress, nuint size, DmaDirection direction) =>
            throw new InvalidOperationException("unmap failed (injected)");

        public void SyncForDevice(ulong dmaAddress, nuint size, DmaDirection direction)
        {
        }

        public void SyncForCpu(ulong dmaAddress, nuint size, DmaDirection direction)
        {
        }
    }

    /// <summary>Waits for the pool's warning that a release failed outside any caller.</summary>
    private sealed class FailureListener : EventListener
    {
        public ManualResetEventSlim Seen { get; } = new();

        public string? Message { get; private set; }

        protected override void OnEventSourceCreated(EventSource source)
        {
            if (source.Name == "UnmanagedPool-PagePool")
                EnableEvents(source, EventLevel.Warning);
        }

        protected override void OnEventWritten(EventWrittenEventArgs e)
        {
            if (e.EventName == "ReleaseFailed")
            {
                Message = e.Payload is { Count: > 2 } p ? p[2]?.ToString() : null;
                Seen.Set();
            }
        }
    }

    /// <summary>
    /// Two pieces of the consumer's fragment page; another thread puts the second, then the first, and stops
    /// right after the atomic drop of the first put. The consumer thread then disposes the pool: the drain of the
    /// fragment page finds every piece back and releases it, and the last page back frees the pool and its
    /// provider's regions. Then the putter goes on.
    /// </summary>
    private static unsafe int FragPutDispose()
    {
        using var atPause = new ManualResetEventSlim();
        using var resume = new ManualResetEventSlim();
        var pool = new PagePool(new PagePoolOptions { Name = "race-frag-dispose", PoolSize = 64 });
        NetMemRef a = pool.AllocFrag(256, out _);
        NetMemRef b = pool.AllocFrag(256, out _);
        if (a != b)
            return Fail("the two pieces are not of one page");

        bool armed = false;
        SetPause(point =>
        {
            // Pause point 1: after UnrefSlow's atomic drop, on the putting thread.
            if (point != 1 || !Volatile.Read(ref armed))
                return;
            Volatile.Write(ref armed, false);
            atPause.Set();
            resume.Wait();
        });
        Exception? putError = null;
        var putter = new Thread(() =>
        {
            try
            {
                pool.PutPage(b);
                Volatile.Write(ref armed, true);
                pool.PutPage(a);
            }
            catch (Exception e)
            {
                putError = e;
            }
        });
        putter.Start();
        if (!atPause.Wait(TimeSpan.FromSeconds(30)))
            return Fail("the putter never reached the pause point");
        pool.Dispose();
        bool freed = pool.IsFreed;
        resume.Set();
        putter.Join();
        SetPause(null);
        if (putError != null)
            return Fail("the put threw: " + putError);
        if (!freed)
            return Fail($"the pool was not freed by Dispose (in flight {pool.InFlight})");
        Console.WriteLine("ok pool freed, put completed");
        return 0;
    }

    private static void SetPause(Action<int>? pause)
    {
        Type hooks = typeof(PagePool).Assembly.GetType("UnmanagedPool.Internal.RaceHooks", throwOnError: true)!;
        FieldInfo field = hooks.GetField("Pause", BindingFlags.Public | BindingFlags.Static)
            ?? throw new MissingFieldException("RaceHooks.Pause");
        field.SetValue(null, pause);
    }
}
