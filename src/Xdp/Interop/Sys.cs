using System.Runtime.InteropServices;

namespace UnmanagedPool.AfXdp.Interop;

/// <summary>The libc calls and kernel ABI of AF_XDP and bpf(2) (include/uapi/linux/if_xdp.h, bpf.h). Every call reports errno.</summary>
internal static unsafe partial class Sys
{
    private const string Lib = "libc";

    public const int AF_XDP = 44;
    public const int SOCK_RAW = 3;
    public const int SOCK_CLOEXEC = 0x80000;
    public const int SOL_XDP = 283;

    // Socket options (if_xdp.h).
    public const int XDP_MMAP_OFFSETS = 1;
    public const int XDP_RX_RING = 2;
    public const int XDP_TX_RING = 3;
    public const int XDP_UMEM_REG = 4;
    public const int XDP_UMEM_FILL_RING = 5;
    public const int XDP_UMEM_COMPLETION_RING = 6;
    public const int XDP_STATISTICS = 7;
    public const int XDP_OPTIONS = 8;

    // sxdp_flags.
    public const ushort XDP_SHARED_UMEM = 1 << 0;
    public const ushort XDP_COPY = 1 << 1;
    public const ushort XDP_ZEROCOPY = 1 << 2;
    public const ushort XDP_USE_NEED_WAKEUP = 1 << 3;

    public const uint XDP_RING_NEED_WAKEUP = 1 << 0;
    public const uint XDP_OPTIONS_ZEROCOPY = 1 << 0;

    // mmap page offsets of the rings.
    public const long XDP_PGOFF_RX_RING = 0;
    public const long XDP_PGOFF_TX_RING = 0x80000000;
    public const long XDP_UMEM_PGOFF_FILL_RING = 0x100000000;
    public const long XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000;

    public const int PROT_READ = 1;
    public const int PROT_WRITE = 2;
    public const int MAP_SHARED = 1;
    public const int MAP_POPULATE = 0x8000;
    public const int MAP_PRIVATE = 2;
    public const int MAP_FIXED = 0x10;
    public const int MAP_ANONYMOUS = 0x20;
    public const int MAP_NORESERVE = 0x4000;
    public static readonly nint MAP_FAILED = -1;

    public const int MSG_DONTWAIT = 0x40;
    public const short POLLIN = 1;

    // errno values used to classify failures.
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EINTR = 4;
    public const int ENXIO = 6;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int ENODEV = 19;
    public const int EINVAL = 22;
    public const int ENOBUFS = 105;
    public const int EAFNOSUPPORT = 97;
    public const int EOPNOTSUPP = 95;
    public const int ENETDOWN = 100;
    public const int ENOSYS = 38;
    public const int EBADF = 9;

    // Netlink (include/uapi/linux/netlink.h, rtnetlink.h, if_link.h).
    public const int AF_NETLINK = 16;
    public const int NETLINK_ROUTE = 0;
    public const int SOL_NETLINK = 270;
    public const int NETLINK_CAP_ACK = 10;
    public const int NETLINK_EXT_ACK = 11;

    [StructLayout(LayoutKind.Sequential)]
    public struct SockaddrNl
    {
        public ushort Family;
        public ushort Pad;
        public uint Pid;
        public uint Groups;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct SockaddrXdp
    {
        public ushort Family;
        public ushort Flags;
        public uint IfIndex;
        public uint QueueId;
        public uint SharedUmemFd;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct UmemReg
    {
        public ulong Addr;
        public ulong Len;
        public uint ChunkSize;
        public uint Headroom;
        public uint Flags;
        public uint TxMetadataLen;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct RingOffset
    {
        public ulong Producer;
        public ulong Consumer;
        public ulong Desc;
        public ulong Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MmapOffsets
    {
        public RingOffset Rx;
        public RingOffset Tx;
        public RingOffset Fill;
        public RingOffset Completion;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short REvents;
    }

    [LibraryImport(Lib, EntryPoint = "socket", SetLastError = true)]
    public static partial int Socket(int domain, int type, int protocol);

    [LibraryImport(Lib, EntryPoint = "setsockopt", SetLastError = true)]
    public static partial int SetSockOpt(int fd, int level, int name, void* value, uint length);

    [LibraryImport(Lib, EntryPoint = "getsockopt", SetLastError = true)]
    public static partial int GetSockOpt(int fd, int level, int name, void* value, uint* length);

    [LibraryImport(Lib, EntryPoint = "bind", SetLastError = true)]
    public static partial int Bind(int fd, void* address, uint length);

    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint MMap(nint address, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)]
    public static partial int MUnmap(nint address, nuint length);

    [LibraryImport(Lib, EntryPoint = "sendto", SetLastError = true)]
    public static partial nint SendTo(int fd, void* buffer, nuint length, int flags, void* address, uint addressLength);

    [LibraryImport(Lib, EntryPoint = "recvfrom", SetLastError = true)]
    public static partial nint RecvFrom(int fd, void* buffer, nuint length, int flags, void* address, uint* addressLength);

    [LibraryImport(Lib, EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport(Lib, EntryPoint = "if_nametoindex", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial uint IfNameToIndex(string name);

    [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall3(long number, nint a1, nint a2, nint a3);

    [LibraryImport(Lib, EntryPoint = "strerror")]
    private static partial nint StrError(int errno);

    /// <summary>bpf(2): glibc has no wrapper; returns the result or -1 with errno set.</summary>
    public static int Bpf(int command, void* attr, uint size)
    {
        long number = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 321,
            Architecture.Arm64 => 280,
            _ => -1,
        };
        if (number < 0)
        {
            Marshal.SetLastPInvokeError(38); // ENOSYS
            return -1;
        }
        return (int)Syscall3(number, command, (nint)attr, (nint)size);
    }

    /// <summary>The C library's message for <paramref name="errno"/>.</summary>
    public static string Describe(int errno) => Marshal.PtrToStringUTF8(StrError(errno)) ?? $"errno {errno}";
}
