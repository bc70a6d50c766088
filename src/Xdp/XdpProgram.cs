using System.Runtime.InteropServices;
using System.Text;
using UnmanagedPool.AfXdp.Interop;

namespace UnmanagedPool.AfXdp;

/// <summary>Where the kernel runs an XDP program: the driver's hook, or the generic hook in the stack.</summary>
public enum XdpAttachMode
{
    /// <summary>The driver's hook where the driver has one, the generic hook otherwise (the kernel's choice).</summary>
    Auto = 0,

    /// <summary><c>XDP_FLAGS_SKB_MODE</c>: the generic hook, on any interface, after the stack built an skb.</summary>
    Generic,

    /// <summary><c>XDP_FLAGS_DRV_MODE</c>: the driver's hook; fails on an interface without native XDP.</summary>
    Native,
}

/// <summary>How an XDP program is attached to its interface: through a BPF link, or through rtnetlink.</summary>
public enum XdpAttachMethod
{
    /// <summary>
    /// A BPF link where the kernel has XDP links (Linux 5.9 and later), rtnetlink (<see cref="Netlink"/>) where
    /// <c>BPF_LINK_CREATE</c> says it does not know them (<c>ENOSYS</c>, or <c>EINVAL</c> on a kernel older than 5.9).
    /// </summary>
    Auto = 0,

    /// <summary>
    /// <c>BPF_LINK_CREATE</c>: the attachment lives in the link's file descriptor, so the program goes away when
    /// the program is disposed or the process ends in any way, a kill included.
    /// </summary>
    Link,

    /// <summary>
    /// <c>RTM_SETLINK</c> with <c>IFLA_XDP</c> (what <c>ip link set dev X xdp</c> does), with
    /// <c>XDP_FLAGS_UPDATE_IF_NOEXIST</c> so that another program is never replaced. The attachment belongs to the
    /// interface, not to the process: <see cref="XdpProgram.Dispose"/> (and the finalizer) detaches it, but a
    /// process that is killed leaves the program attached, and the interface busy, until someone runs
    /// <c>ip link set dev X xdp off</c> (or <c>xdpgeneric off</c> for the generic hook).
    /// </summary>
    Netlink,
}

/// <summary>Parameters of an <see cref="XdpProgram"/>.</summary>
public sealed class XdpProgramOptions
{
    /// <summary>The interface to attach to (by name).</summary>
    public required string Interface { get; init; }

    /// <summary>The hook to attach at (driver, generic, or the kernel's choice).</summary>
    public XdpAttachMode Mode { get; init; }

    /// <summary>A BPF link, rtnetlink, or a link with rtnetlink where the kernel has no XDP links (the default).</summary>
    public XdpAttachMethod Method { get; init; }

    /// <summary>Entries in the XSKMAP: queues that can get a socket (default 64).</summary>
    public int MaxQueues { get; init; } = 64;
}

/// <summary>
/// The redirect program every AF_XDP receiver needs, built as eBPF bytecode in C# and loaded with raw
/// <c>bpf(2)</c> (no libbpf, no BTF, no bpffs): an XSKMAP keyed by queue index, and a program that redirects each
/// frame to the socket registered for its <c>rx_queue_index</c> and passes it to the stack (<c>XDP_PASS</c>) when
/// none is.
/// </summary>
/// <remarks>
/// <para>
/// It is attached with a BPF link where the kernel has XDP links (5.9 and later), which lives in a file
/// descriptor: closing it (<see cref="Dispose"/>, or the process dying, even killed) detaches the program. Older
/// kernels, or <see cref="XdpAttachMethod.Netlink"/> asked for, attach through rtnetlink (<c>IFLA_XDP</c>): that
/// attachment belongs to the interface and outlives a process that is killed (<c>SIGKILL</c>, the OOM killer), so
/// the next run finds the interface busy (<see cref="XdpError.Busy"/>) until the program is removed with
/// <c>ip link set dev X xdp off</c> (<c>xdpgeneric off</c> in generic mode). <see cref="Dispose"/> detaches it
/// only while it is still this program's (<c>XDP_FLAGS_REPLACE</c> with <c>IFLA_XDP_EXPECTED_FD</c>): a program
/// someone else attached since is left in place.
/// </para>
/// <para>
/// The descriptors and the attachment belong to a <see cref="SafeHandle"/>: <see cref="Dispose"/> may run more
/// than once and from any thread, and a program dropped without it is detached and freed by the finalizer.
/// </para>
/// </remarks>
public sealed unsafe class XdpProgram : IDisposable
{
    /// <summary>The license the program is loaded under (the redirect helper is GPL-only).</summary>
    public const string License = "Dual MIT/GPL";

    private const int BPF_MAP_CREATE = 0;
    private const int BPF_MAP_UPDATE_ELEM = 2;
    private const int BPF_MAP_DELETE_ELEM = 3;
    private const int BPF_PROG_LOAD = 5;
    private const int BPF_OBJ_GET_INFO_BY_FD = 15;
    private const int BPF_LINK_CREATE = 28;
    private const int BPF_MAP_TYPE_XSKMAP = 17;
    private const int BPF_PROG_TYPE_XDP = 6;
    private const int BPF_XDP = 37;
    private const int AttrSize = 128;

    /// <summary>The first kernel with XDP BPF links (<c>BPF_LINK_CREATE</c> with <c>BPF_XDP</c>).</summary>
    internal static readonly Version FirstKernelWithXdpLinks = new(5, 9);

    private readonly ProgramHandle _handle = new();

    /// <summary>Creates the XSKMAP, loads the program and attaches it to <paramref name="interfaceName"/> (a BPF link where the kernel has them).</summary>
    /// <param name="interfaceName">The interface to attach to.</param>
    /// <param name="mode">The hook to attach at.</param>
    /// <param name="maxQueues">Entries in the XSKMAP: queues that can get a socket (default 64).</param>
    /// <exception cref="XdpException">
    /// A step failed: <see cref="XdpError.NoSuchInterface"/>, <see cref="XdpError.PermissionDenied"/>,
    /// <see cref="XdpError.NotSupported"/> (no native XDP in <see cref="XdpAttachMode.Native"/>),
    /// <see cref="XdpError.Busy"/> (another XDP program is attached), <see cref="XdpError.VerifierRejected"/>.
    /// </exception>
    public XdpProgram(string interfaceName, XdpAttachMode mode = XdpAttachMode.Auto, int maxQueues = 64)
        : this(new XdpProgramOptions { Interface = interfaceName, Mode = mode, MaxQueues = maxQueues })
    {
    }

    /// <summary>Creates the XSKMAP, loads the program and attaches it as <paramref name="options"/> say.</summary>
    /// <exception cref="XdpException">
    /// A step failed: <see cref="XdpError.NoSuchInterface"/>, <see cref="XdpError.PermissionDenied"/>,
    /// <see cref="XdpError.NotSupported"/> (no native XDP in <see cref="XdpAttachMode.Native"/>, or no XDP links
    /// with <see cref="XdpAttachMethod.Link"/>), <see cref="XdpError.Busy"/> (another XDP program is attached; it
    /// stays attached), <see cref="XdpError.VerifierRejected"/>.
    /// </exception>
    public XdpProgram(XdpProgramOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxQueues, 1, nameof(options.MaxQueues));
        if (!Enum.IsDefined(options.Method))
            throw new ArgumentOutOfRangeException(nameof(options), options.Method, "Unknown attach method.");
        Interface = options.Interface;
        IfIndex = XdpInterface.IndexOf(options.Interface);
        Mode = options.Mode;
        try
        {
            _handle.MapFd = CreateXskMap(options.MaxQueues);
            _handle.ProgFd = LoadProgram(BuildRedirectProgram(_handle.MapFd));
            ProgramId = IdOf(_handle.ProgFd);
            AttachMethod = Attach(options.Method);
        }
        catch
        {
            _handle.Dispose();
            throw;
        }
    }

    /// <summary>The interface the program is attached to.</summary>
    public string Interface { get; }

    /// <summary>Its index.</summary>
    public int IfIndex { get; }

    /// <summary>The hook asked for.</summary>
    public XdpAttachMode Mode { get; }

    /// <summary>How the program was attached: <see cref="XdpAttachMethod.Link"/> or <see cref="XdpAttachMethod.Netlink"/> (never Auto).</summary>
    public XdpAttachMethod AttachMethod { get; }

    /// <summary>The kernel's id of the loaded program (what <c>ip link show</c> and <c>bpftool prog</c> print).</summary>
    public uint ProgramId { get; }

    /// <summary>The XSKMAP's file descriptor (-1 after <see cref="Dispose"/>).</summary>
    public int MapFd => _handle.IsClosed ? -1 : _handle.MapFd;

    /// <summary>The program's file descriptor (-1 after <see cref="Dispose"/>).</summary>
    public int ProgramFd => _handle.IsClosed ? -1 : _handle.ProgFd;

    /// <summary>The BPF link's file descriptor (closing it detaches the program); -1 when attached through netlink or after <see cref="Dispose"/>.</summary>
    public int LinkFd => _handle.IsClosed ? -1 : _handle.LinkFd;

    /// <summary>Whether the program is attached (until <see cref="Dispose"/>).</summary>
    public bool IsAttached => !_handle.IsClosed;

    /// <summary>Sends frames of queue <paramref name="queueId"/> to <paramref name="socket"/> (<c>BPF_MAP_UPDATE_ELEM</c>).</summary>
    /// <exception cref="XdpException">The map refused the socket (a queue past the map, a socket not bound).</exception>
    /// <exception cref="ObjectDisposedException">The program or the socket has been disposed (its descriptor number may name another file by now).</exception>
    public void Register(int queueId, XdpSocket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        // Both descriptors stay open for the call, even if another thread disposes their owners meanwhile.
        bool programRef = false, socketRef = false;
        try
        {
            AddRef(_handle, ref programRef, this);
            AddRef(socket.Handle, ref socketRef, socket);
            uint key = (uint)queueId;
            uint value = (uint)socket.Fd;
            byte* attr = stackalloc byte[AttrSize];
            new Span<byte>(attr, AttrSize).Clear();
            *(uint*)attr = (uint)_handle.MapFd;
            *(ulong*)(attr + 8) = (ulong)&key;
            *(ulong*)(attr + 16) = (ulong)&value;
            if (Sys.Bpf(BPF_MAP_UPDATE_ELEM, attr, AttrSize) < 0)
                throw XdpException.FromErrno($"bpf(BPF_MAP_UPDATE_ELEM) of the socket for queue {queueId}", Marshal.GetLastPInvokeError());
        }
        finally
        {
            if (socketRef)
                socket.Handle.DangerousRelease();
            if (programRef)
                _handle.DangerousRelease();
        }
    }

    /// <summary>Stops sending frames of queue <paramref name="queueId"/> to a socket (they pass to the stack).</summary>
    /// <returns>False when no socket was registered for it.</returns>
    /// <exception cref="ObjectDisposedException">The program has been disposed.</exception>
    public bool Unregister(int queueId)
    {
        bool programRef = false;
        try
        {
            AddRef(_handle, ref programRef, this);
            uint key = (uint)queueId;
            byte* attr = stackalloc byte[AttrSize];
            new Span<byte>(attr, AttrSize).Clear();
            *(uint*)attr = (uint)_handle.MapFd;
            *(ulong*)(attr + 8) = (ulong)&key;
            return Sys.Bpf(BPF_MAP_DELETE_ELEM, attr, AttrSize) == 0;
        }
        finally
        {
            if (programRef)
                _handle.DangerousRelease();
        }
    }

    /// <summary>
    /// Detaches the program (closes the link, or, when attached through netlink, removes it from the interface if it
    /// is still this program) and frees the program and the map. Safe to call more than once, from any thread.
    /// </summary>
    public void Dispose() => _handle.Dispose();

    private static void AddRef(SafeHandle handle, ref bool added, object owner)
    {
        try
        {
            handle.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            throw new ObjectDisposedException(owner.GetType().FullName);
        }
    }

    /// <summary>
    /// The redirect program as eBPF instructions (8 bytes each; the 64-bit load of the map takes two):
    /// <code>
    /// r2 = *(u32 *)(r1 + 16)      ; ctx->rx_queue_index
    /// r1 = map[mapFd] ll          ; BPF_PSEUDO_MAP_FD
    /// r3 = 2                      ; XDP_PASS when the queue has no socket
    /// call bpf_redirect_map       ; helper 51
    /// exit
    /// </code>
    /// </summary>
    public static ulong[] BuildRedirectProgram(int mapFd) =>
    [
        Insn(0x61, dst: 2, src: 1, off: 16, imm: 0),          // BPF_LDX | BPF_MEM | BPF_W
        Insn(0x18, dst: 1, src: 1, off: 0, imm: mapFd),       // BPF_LD | BPF_IMM | BPF_DW, src = BPF_PSEUDO_MAP_FD
        Insn(0x00, dst: 0, src: 0, off: 0, imm: 0),           // upper half of the 64-bit immediate
        Insn(0xb7, dst: 3, src: 0, off: 0, imm: 2),           // BPF_ALU64 | BPF_MOV | BPF_K: r3 = XDP_PASS
        Insn(0x85, dst: 0, src: 0, off: 0, imm: 51),          // BPF_JMP | BPF_CALL: bpf_redirect_map
        Insn(0x95, dst: 0, src: 0, off: 0, imm: 0),           // BPF_JMP | BPF_EXIT
    ];

    /// <summary>One <c>struct bpf_insn</c>: code, dst_reg:4 | src_reg:4, off, imm, little-endian.</summary>
    internal static ulong Insn(byte code, int dst, int src, short off, int imm) =>
        code | (ulong)(byte)((dst & 0xf) | (src << 4)) << 8 | (ulong)(ushort)off << 16 | (ulong)(uint)imm << 32;

    private static int CreateXskMap(int entries)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)attr = BPF_MAP_TYPE_XSKMAP;
        *(uint*)(attr + 4) = sizeof(uint);     // key: queue index
        *(uint*)(attr + 8) = sizeof(uint);     // value: socket fd
        *(uint*)(attr + 12) = (uint)entries;
        Encoding.ASCII.GetBytes("xsks_map", new Span<byte>(attr + 28, 15));
        int fd = Sys.Bpf(BPF_MAP_CREATE, attr, AttrSize);
        if (fd < 0)
            throw XdpException.FromErrno("bpf(BPF_MAP_CREATE) of an XSKMAP", Marshal.GetLastPInvokeError());
        return fd;
    }

    internal static int LoadProgram(ulong[] insns)
    {
        byte[] license = Encoding.ASCII.GetBytes(License + "\0");
        fixed (ulong* code = insns)
        fixed (byte* lic = license)
        {
            int fd = Load(code, insns.Length, lic, null, 0);
            if (fd >= 0)
                return fd;
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Sys.EPERM)
                throw XdpException.FromErrno("bpf(BPF_PROG_LOAD)", errno);
            // Load again with the verifier's log, to show why.
            byte[] log = new byte[64 << 10];
            fixed (byte* logBuf = log)
            {
                fd = Load(code, insns.Length, lic, logBuf, log.Length);
                if (fd >= 0)
                    return fd;
                errno = Marshal.GetLastPInvokeError();
                string text = Encoding.ASCII.GetString(log, 0, Math.Max(0, Array.IndexOf(log, (byte)0))).Trim();
                if (text.Length == 0)
                    throw XdpException.FromErrno("bpf(BPF_PROG_LOAD) of the XDP redirect program", errno);
                throw new XdpException(XdpError.VerifierRejected, errno,
                    $"bpf(BPF_PROG_LOAD) of the XDP redirect program: {Sys.Describe(errno)} (errno {errno}); verifier log:\n{text}");
            }
        }
    }

    private static int Load(ulong* code, int count, byte* license, byte* log, int logSize)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)attr = BPF_PROG_TYPE_XDP;
        *(uint*)(attr + 4) = (uint)count;
        *(ulong*)(attr + 8) = (ulong)code;
        *(ulong*)(attr + 16) = (ulong)license;
        if (log != null)
        {
            *(uint*)(attr + 24) = 1;           // log_level
            *(uint*)(attr + 28) = (uint)logSize;
            *(ulong*)(attr + 32) = (ulong)log;
        }
        Encoding.ASCII.GetBytes("xsk_redirect", new Span<byte>(attr + 48, 15));
        *(uint*)(attr + 68) = BPF_XDP;         // expected_attach_type
        return Sys.Bpf(BPF_PROG_LOAD, attr, AttrSize);
    }

    private static uint ModeFlags(XdpAttachMode mode) => mode switch
    {
        XdpAttachMode.Generic => XdpNetlink.XDP_FLAGS_SKB_MODE,
        XdpAttachMode.Native => XdpNetlink.XDP_FLAGS_DRV_MODE,
        _ => 0u,
    };

    /// <summary>
    /// Whether <c>BPF_LINK_CREATE</c> failing with <paramref name="errno"/> on a kernel of version
    /// <paramref name="kernel"/> means the kernel has no XDP links (so that rtnetlink is the way): <c>ENOSYS</c>
    /// (no such command), or <c>EINVAL</c> before 5.9 (older kernels answer <c>EINVAL</c> to a command, or, from
    /// 5.7, to a link attach type, they do not know). On 5.9 and later <c>EINVAL</c> is a real refusal, and
    /// <c>EOPNOTSUPP</c> means the driver has no hook in the mode asked for, which netlink would answer as well.
    /// </summary>
    internal static bool LinksMissing(int errno, Version kernel) =>
        errno == Sys.ENOSYS || (errno == Sys.EINVAL && kernel < FirstKernelWithXdpLinks);

    private XdpAttachMethod Attach(XdpAttachMethod method)
    {
        if (method == XdpAttachMethod.Netlink)
        {
            AttachNetlink(null);
            return XdpAttachMethod.Netlink;
        }
        int errno = TryAttachLink(out int linkFd);
        if (errno == 0)
        {
            _handle.LinkFd = linkFd;
            return XdpAttachMethod.Link;
        }
        if (method == XdpAttachMethod.Auto && LinksMissing(errno, Environment.OSVersion.Version))
        {
            AttachNetlink($"bpf(BPF_LINK_CREATE) failed with {Sys.Describe(errno)} (errno {errno}): this kernel has no XDP links; ");
            return XdpAttachMethod.Netlink;
        }
        throw LinkError(errno);
    }

    private int TryAttachLink(out int linkFd)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)attr = (uint)_handle.ProgFd;
        *(uint*)(attr + 4) = (uint)IfIndex;
        *(uint*)(attr + 8) = BPF_XDP;
        *(uint*)(attr + 12) = ModeFlags(Mode);
        linkFd = Sys.Bpf(BPF_LINK_CREATE, attr, AttrSize);
        return linkFd >= 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    private XdpException LinkError(int errno)
    {
        string what = $"bpf(BPF_LINK_CREATE) attaching XDP to {Interface} ({Mode} mode)";
        XdpError? kind = errno switch
        {
            Sys.EOPNOTSUPP => XdpError.NotSupported,
            Sys.EBUSY or Sys.EEXIST => XdpError.Busy,
            Sys.EINVAL when Mode == XdpAttachMode.Native => XdpError.NotSupported,
            _ => null,
        };
        if (kind == XdpError.NotSupported)
        {
            return new XdpException(XdpError.NotSupported, errno,
                $"{what}: {Sys.Describe(errno)} (errno {errno}): the interface has no native XDP; use generic mode.");
        }
        return XdpException.FromErrno(what, errno, kind);
    }

    /// <summary>
    /// <c>RTM_SETLINK</c> with <c>IFLA_XDP { fd, XDP_FLAGS_UPDATE_IF_NOEXIST | mode }</c>; once the kernel acks it,
    /// the handle records the attachment, so that disposal (or the finalizer) detaches it.
    /// </summary>
    private void AttachNetlink(string? why)
    {
        uint flags = XdpNetlink.XDP_FLAGS_UPDATE_IF_NOEXIST | ModeFlags(Mode);
        int errno = XdpNetlink.SetXdp(IfIndex, _handle.ProgFd, flags, -1, out string? said);
        if (errno == 0)
        {
            _handle.NetlinkIfIndex = IfIndex;
            _handle.NetlinkModeFlags = ModeFlags(Mode);
            return;
        }
        string what = $"{why}netlink RTM_SETLINK IFLA_XDP attaching XDP to {Interface} ({Mode} mode)";
        XdpError? kind = errno switch
        {
            Sys.EBUSY or Sys.EEXIST => XdpError.Busy,
            Sys.EOPNOTSUPP => XdpError.NotSupported,
            Sys.EINVAL when Mode == XdpAttachMode.Native => XdpError.NotSupported,
            _ => null,
        };
        throw XdpException.FromErrno(what, errno, kind, said);
    }

    /// <summary><c>BPF_OBJ_GET_INFO_BY_FD</c>: the program's id (<c>struct bpf_prog_info.id</c>); 0 where the kernel does not say.</summary>
    private static uint IdOf(int progFd)
    {
        byte* info = stackalloc byte[64];
        new Span<byte>(info, 64).Clear();
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)attr = (uint)progFd;
        *(uint*)(attr + 4) = 64;
        *(ulong*)(attr + 8) = (ulong)info;
        return Sys.Bpf(BPF_OBJ_GET_INFO_BY_FD, attr, AttrSize) == 0 ? *(uint*)(info + 4) : 0;
    }

    /// <summary>
    /// The map, program and link descriptors and the netlink attachment, given back once: on <see cref="Dispose"/>
    /// (any number of calls, any thread), on a failed construction, or in the finalizer of a program never disposed.
    /// </summary>
    private sealed class ProgramHandle : SafeHandle
    {
        public ProgramHandle()
            : base(invalidHandleValue: -1, ownsHandle: true)
        {
            SetHandle(0);
        }

        public int MapFd = -1;
        public int ProgFd = -1;
        public int LinkFd = -1;
        public int NetlinkIfIndex;       // > 0 while attached through netlink
        public uint NetlinkModeFlags;

        public override bool IsInvalid => false;

        protected override bool ReleaseHandle()
        {
            // The program leaves the interface before the map it reads goes away.
            if (LinkFd >= 0)
                Sys.Close(LinkFd);
            if (NetlinkIfIndex > 0)
                DetachNetlink();
            if (ProgFd >= 0)
                Sys.Close(ProgFd);
            if (MapFd >= 0)
                Sys.Close(MapFd);
            LinkFd = ProgFd = MapFd = -1;
            NetlinkIfIndex = 0;
            return true;
        }

        /// <summary>
        /// Removes the program from the interface only if it is still ours (<c>XDP_FLAGS_REPLACE</c> with
        /// <c>IFLA_XDP_EXPECTED_FD</c>, Linux 5.7 and later). A kernel without <c>XDP_FLAGS_REPLACE</c> answers
        /// EINVAL: there the attached program's id is compared with ours first, and removed when they match.
        /// Nothing is thrown: a program someone else attached meanwhile stays where it is.
        /// </summary>
        private void DetachNetlink()
        {
            int errno = XdpNetlink.SetXdp(NetlinkIfIndex, -1, XdpNetlink.XDP_FLAGS_REPLACE | NetlinkModeFlags, ProgFd, out _);
            if (errno != Sys.EINVAL)
                return;
            uint ours = IdOf(ProgFd);
            if (ours != 0 && XdpNetlink.QueryProgram(NetlinkIfIndex, out uint attached, out _) == 0 && attached == ours)
                XdpNetlink.SetXdp(NetlinkIfIndex, -1, NetlinkModeFlags, -1, out _);
        }
    }
}
