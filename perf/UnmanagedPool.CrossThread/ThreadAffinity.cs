using System.Runtime.InteropServices;

namespace UnmanagedPool.CrossThread;

/// <summary>
/// Pins the calling thread to one CPU with Linux's <c>sched_setaffinity</c> on its thread id, where the OS allows;
/// elsewhere it says why it cannot.
/// </summary>
internal static unsafe partial class ThreadAffinity
{
    /// <summary>Words of the CPU mask passed to the kernel: 1024 CPUs, glibc's <c>CPU_SETSIZE</c>.</summary>
    private const int MaskWords = 16;

    /// <summary>
    /// Pins the calling thread to <paramref name="cpu"/>. Returns null on success, or a sentence saying why the thread
    /// was not pinned. <paramref name="tid"/> is the thread's kernel id (0 where unknown).
    /// </summary>
    public static string? TryPinCurrentThread(int cpu, out int tid)
    {
        tid = 0;
        if (!OperatingSystem.IsLinux())
            return "pinning needs Linux (sched_setaffinity); threads not pinned";
        if (cpu >= Environment.ProcessorCount || cpu >= MaskWords * 64)
            return $"CPU {cpu} is not available to this process ({Environment.ProcessorCount} CPUs); threads not pinned";
        try
        {
            tid = gettid();
        }
        catch (EntryPointNotFoundException)
        {
            return "gettid is not in this C library; threads not pinned";
        }
        ulong* mask = stackalloc ulong[MaskWords];
        new Span<ulong>(mask, MaskWords).Clear();
        mask[cpu / 64] = 1UL << (cpu % 64);
        if (sched_setaffinity(tid, (nuint)(MaskWords * sizeof(ulong)), mask) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            return $"sched_setaffinity(tid {tid}, CPU {cpu}) failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}); threads not pinned";
        }
        return null;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_setaffinity(int pid, nuint cpusetsize, ulong* mask);

    [LibraryImport("libc")]
    private static partial int gettid();
}
