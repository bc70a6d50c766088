using System.Runtime.InteropServices;

namespace UnmanagedPool.CrossThread;

/// <summary>
/// Pins the calling thread to one CPU with Linux's <c>sched_setaffinity</c> on its thread id, where the OS allows;
/// elsewhere it says why it cannot.
/// </summary>
internal static unsafe partial class ThreadAffinity
{
    /// <summary>Words of a CPU mask passed to the kernel: 1024 CPUs, glibc's <c>CPU_SETSIZE</c>.</summary>
    public const int MaskWords = 16;

    /// <summary>
    /// Reads the calling thread's CPU mask into <paramref name="mask"/> and checks that every CPU of
    /// <paramref name="cpus"/> is in it (a thread may widen its own mask past what taskset or a cpuset gave the
    /// process, so the check is made here, not left to the kernel). Returns null when they all are, or why not.
    /// </summary>
    public static string? CheckAllowed(Span<ulong> mask, params ReadOnlySpan<int> cpus)
    {
        if (!OperatingSystem.IsLinux())
            return "pinning needs Linux (sched_setaffinity); threads not pinned";
        mask.Clear();
        fixed (ulong* m = mask)
        {
            if (sched_getaffinity(0, (nuint)(mask.Length * sizeof(ulong)), m) < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                return $"sched_getaffinity failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}); threads not pinned";
            }
        }
        foreach (int cpu in cpus)
        {
            if (cpu >= mask.Length * 64 || (mask[cpu / 64] & (1UL << (cpu % 64))) == 0)
                return $"CPU {cpu} is not in this process's CPU mask (taskset or cpuset); threads not pinned";
        }
        return null;
    }

    /// <summary>
    /// Pins the calling thread to <paramref name="cpu"/>. Returns null on success, or a sentence saying why the thread
    /// was not pinned. <paramref name="tid"/> is the thread's kernel id (0 where unknown).
    /// </summary>
    public static string? TryPinCurrentThread(int cpu, out int tid)
    {
        Span<ulong> mask = stackalloc ulong[MaskWords];
        mask.Clear();
        mask[cpu / 64] = 1UL << (cpu % 64);
        return TrySetCurrentThread(mask, out tid);
    }

    /// <summary>Sets the calling thread's CPU mask to <paramref name="mask"/>; null on success, or why not.</summary>
    public static string? TrySetCurrentThread(ReadOnlySpan<ulong> mask, out int tid)
    {
        tid = 0;
        if (!OperatingSystem.IsLinux())
            return "pinning needs Linux (sched_setaffinity); threads not pinned";
        try
        {
            tid = gettid();
        }
        catch (EntryPointNotFoundException)
        {
            return "gettid is not in this C library; threads not pinned";
        }
        fixed (ulong* m = mask)
        {
            if (sched_setaffinity(tid, (nuint)(mask.Length * sizeof(ulong)), m) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                return $"sched_setaffinity(tid {tid}) failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}); threads not pinned";
            }
        }
        return null;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_setaffinity(int pid, nuint cpusetsize, ulong* mask);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_getaffinity(int pid, nuint cpusetsize, ulong* mask);

    [LibraryImport("libc")]
    private static partial int gettid();
}
