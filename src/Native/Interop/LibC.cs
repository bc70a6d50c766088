using System.Runtime.InteropServices;

namespace UnmanagedPool.Native.Interop;

/// <summary>The few libc calls a region needs. Every caller tolerates failure and reports errno.</summary>
internal static unsafe partial class LibC
{
    private const string Lib = "libc";

    public const int MADV_DONTNEED = 4;
    public const int MADV_HUGEPAGE = 14;
    public const int MADV_NOHUGEPAGE = 15;

    public const int PROT_NONE = 0;
    public const int PROT_READ = 1;
    public const int PROT_WRITE = 2;
    public const int MAP_PRIVATE = 0x02;
    public const int MAP_FIXED = 0x10;
    public const int MAP_ANONYMOUS = 0x20;
    public const int MAP_NORESERVE = 0x4000;
    public const int MAP_HUGETLB = 0x40000;
    public static readonly nint MAP_FAILED = -1;

    private const long SYS_mbind_x64 = 237;
    private const long SYS_mbind_arm64 = 235;
    public const int MPOL_BIND = 2;
    public const int MPOL_PREFERRED = 1;

    [LibraryImport(Lib, EntryPoint = "madvise", SetLastError = true)]
    public static partial int MAdvise(void* address, nuint length, int advice);

    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint MMap(nint address, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)]
    public static partial int MUnmap(nint address, nuint length);

    [LibraryImport(Lib, EntryPoint = "mlock", SetLastError = true)]
    public static partial int MLock(void* address, nuint length);

    [LibraryImport(Lib, EntryPoint = "munlock", SetLastError = true)]
    public static partial int MUnlock(void* address, nuint length);

    [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall6(long number, nint a1, nint a2, nint a3, nint a4, nint a5, nint a6);

    /// <summary>
    /// mbind(2) through syscall(2): glibc does not export it (libnuma does), and the raw call needs no extra library.
    /// Returns 0 or -1 with errno set; -1 with ENOSYS on an architecture without a known number.
    /// </summary>
    public static int MBindPreferred(void* address, nuint length, int node)
    {
        long number = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => SYS_mbind_x64,
            Architecture.Arm64 => SYS_mbind_arm64,
            _ => -1,
        };
        if (number < 0 || node < 0 || node >= 64)
        {
            Marshal.SetLastPInvokeError(38); // ENOSYS
            return -1;
        }
        ulong mask = 1UL << node;
        return (int)Syscall6(number, (nint)address, (nint)length, MPOL_PREFERRED, (nint)(&mask), 64 + 1, 0);
    }

    public static bool IsLinux => OperatingSystem.IsLinux();
}
