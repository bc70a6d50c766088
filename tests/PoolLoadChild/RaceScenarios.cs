using System.Reflection;
using UnmanagedPool;
using UnmanagedPool.Native;

namespace UnmanagedPool.PoolLoadChild;

/// <summary>
/// Races that, when they go wrong, end the process (a read of a freed region): run here, in a child process, so
/// the test host survives and the test sees the exit code. <c>dotnet PoolLoadChild.dll --race NAME</c> prints
/// <c>ok ...</c> and exits 0 when the pool came through. The pause points are internal to the pool library; this
/// program sets them by name through reflection.
/// </summary>
internal static class RaceScenarios
{
    public static int Run(string name) => name switch
    {
        "frag-put-dispose" => FragPutDispose(),
        _ => Fail($"unknown race '{name}'"),
    };

    private static int Fail(string message)
    {
        Console.WriteLine("fail " + message);
        return 2;
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
