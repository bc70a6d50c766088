using System.Runtime.CompilerServices;

namespace UnmanagedPool.Internal;

/// <summary>
/// Pause points for tests: a test sets <see cref="Pause"/> to stop a thread at a step where another thread may
/// complete a race (Dispose, a drain), so the race runs the same way every time. Each point sits on a slow path
/// (never on an alloc-cache or per-CPU fast path) and costs one static load and a branch while no test is running.
/// </summary>
internal static class RaceHooks
{
    /// <summary>In <c>UnrefSlow</c> and in <c>UnrefPage</c>'s inline drop, right after the atomic drop of references (any thread): another thread may now free the page.</summary>
    public const int AfterUnrefSlow = 1;

    /// <summary>In <see cref="PagePool.AllocPages"/> from a thread other than the consumer, after each page taken.</summary>
    public const int SharedBulkAllocNext = 2;

    /// <summary>In the fragment drain, after it read a count that says every piece is back and before it takes the page.</summary>
    public const int DrainFragAllBack = 3;

    /// <summary>Debug mode, in the put of a page whose count read 1, before that reference is dropped.</summary>
    public const int DebugSingleRefPut = 4;

    /// <summary>Debug mode, in a put that names a fragment by its address, after the piece is marked put and before its reference is dropped.</summary>
    public const int DebugPiecePut = 5;

    /// <summary>
    /// The pause routine, called with the point's number on the thread that reached it; null outside tests. Set
    /// by name through reflection from the race child process, which has no access to internals.
    /// </summary>
    public static Action<int>? Pause;

    /// <summary>Runs the pause routine for <paramref name="point"/> when a test set one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void At(int point)
    {
        // Volatile: a test sets the routine on one thread and the racing thread must see it.
        Action<int>? pause = Volatile.Read(ref Pause);
        if (pause != null)
            pause(point);
    }
}
