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

/// <summary>
/// The redirect program every AF_XDP receiver needs, built as eBPF bytecode in C# and loaded with raw
/// <c>bpf(2)</c> (no libbpf, no BTF, no bpffs): an XSKMAP keyed by queue index, and a program that redirects each
/// frame to the socket registered for its <c>rx_queue_index</c> and passes it to the stack (<c>XDP_PASS</c>) when
/// none is. It is attached with a BPF link, which lives in a file descriptor: closing it (<see cref="Dispose"/>, or
/// the process dying) detaches the program.
/// </summary>
public sealed unsafe class XdpProgram : IDisposable
{
    /// <summary>The license the program is loaded under (the redirect helper is GPL-only).</summary>
    public const string License = "Dual MIT/GPL";

    private const int BPF_MAP_CREATE = 0;
    private const int BPF_MAP_UPDATE_ELEM = 2;
    private const int BPF_MAP_DELETE_ELEM = 3;
    private const int BPF_PROG_LOAD = 5;
    private const int BPF_LINK_CREATE = 28;
    private const int BPF_MAP_TYPE_XSKMAP = 17;
    private const int BPF_PROG_TYPE_XDP = 6;
    private const int BPF_XDP = 37;
    private const uint XDP_FLAGS_SKB_MODE = 1 << 1;
    private const uint XDP_FLAGS_DRV_MODE = 1 << 2;
    private const int AttrSize = 128;

    private int _mapFd = -1;
    private int _progFd = -1;
    private int _linkFd = -1;

    /// <summary>Creates the XSKMAP, loads the program and attaches it to <paramref name="interfaceName"/>.</summary>
    /// <param name="interfaceName">The interface to attach to.</param>
    /// <param name="mode">The hook to attach at.</param>
    /// <param name="maxQueues">Entries in the XSKMAP: queues that can get a socket (default 64).</param>
    /// <exception cref="XdpException">
    /// A step failed: <see cref="XdpError.NoSuchInterface"/>, <see cref="XdpError.PermissionDenied"/>,
    /// <see cref="XdpError.NotSupported"/> (no native XDP in <see cref="XdpAttachMode.Native"/>),
    /// <see cref="XdpError.Busy"/> (another XDP program is attached), <see cref="XdpError.VerifierRejected"/>.
    /// </exception>
    public XdpProgram(string interfaceName, XdpAttachMode mode = XdpAttachMode.Auto, int maxQueues = 64)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxQueues, 1);
        Interface = interfaceName;
        IfIndex = XdpInterface.IndexOf(interfaceName);
        Mode = mode;
        try
        {
            _mapFd = CreateXskMap(maxQueues);
            _progFd = LoadProgram(BuildRedirectProgram(_mapFd));
            _linkFd = Attach(_progFd, IfIndex, mode, interfaceName);
        }
        catch
        {
            CloseAll();
            throw;
        }
    }

    /// <summary>The interface the program is attached to.</summary>
    public string Interface { get; }

    /// <summary>Its index.</summary>
    public int IfIndex { get; }

    /// <summary>The hook asked for.</summary>
    public XdpAttachMode Mode { get; }

    /// <summary>The XSKMAP's file descriptor.</summary>
    public int MapFd => _mapFd;

    /// <summary>The program's file descriptor.</summary>
    public int ProgramFd => _progFd;

    /// <summary>The BPF link's file descriptor (closing it detaches the program).</summary>
    public int LinkFd => _linkFd;

    /// <summary>Whether the program is attached (until <see cref="Dispose"/>).</summary>
    public bool IsAttached => _linkFd >= 0;

    /// <summary>Sends frames of queue <paramref name="queueId"/> to <paramref name="socket"/> (<c>BPF_MAP_UPDATE_ELEM</c>).</summary>
    /// <exception cref="XdpException">The map refused the socket (a queue past the map, a socket not bound).</exception>
    public void Register(int queueId, XdpSocket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        uint key = (uint)queueId;
        uint value = (uint)socket.Fd;
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)attr = (uint)_mapFd;
        *(ulong*)(attr + 8) = (ulong)&key;
        *(ulong*)(attr + 16) = (ulong)&value;
        if (Sys.Bpf(BPF_MAP_UPDATE_ELEM, attr, AttrSize) < 0)
            throw XdpException.FromErrno($"bpf(BPF_MAP_UPDATE_ELEM) of the socket for queue {queueId}", Marshal.GetLastPInvokeError());
    }

    /// <summary>Stops sending frames of queue <paramref name="queueId"/> to a socket (they pass to the stack).</summary>
    /// <returns>False when no socket was registered for it.</returns>
    public bool Unregister(int queueId)
    {
        uint key = (uint)queueId;
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)attr = (uint)_mapFd;
        *(ulong*)(attr + 8) = (ulong)&key;
        return Sys.Bpf(BPF_MAP_DELETE_ELEM, attr, AttrSize) == 0;
    }

    /// <summary>Detaches the program (closes the link) and frees the program and the map.</summary>
    public void Dispose() => CloseAll();

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

    private static int Attach(int progFd, int ifIndex, XdpAttachMode mode, string name)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)attr = (uint)progFd;
        *(uint*)(attr + 4) = (uint)ifIndex;
        *(uint*)(attr + 8) = BPF_XDP;
        *(uint*)(attr + 12) = mode switch
        {
            XdpAttachMode.Generic => XDP_FLAGS_SKB_MODE,
            XdpAttachMode.Native => XDP_FLAGS_DRV_MODE,
            _ => 0u,
        };
        int fd = Sys.Bpf(BPF_LINK_CREATE, attr, AttrSize);
        if (fd >= 0)
            return fd;
        int errno = Marshal.GetLastPInvokeError();
        string what = $"bpf(BPF_LINK_CREATE) attaching XDP to {name} ({mode} mode)";
        XdpError? kind = errno switch
        {
            Sys.EOPNOTSUPP => XdpError.NotSupported,
            Sys.EBUSY or Sys.EEXIST => XdpError.Busy,
            Sys.EINVAL when mode == XdpAttachMode.Native => XdpError.NotSupported,
            _ => null,
        };
        if (kind == XdpError.NotSupported)
            throw new XdpException(XdpError.NotSupported, errno,
                $"{what}: {Sys.Describe(errno)} (errno {errno}): the interface has no native XDP; use generic mode.");
        throw XdpException.FromErrno(what, errno, kind);
    }

    private void CloseAll()
    {
        // The link first: the program stops running on the interface before the map it reads goes away.
        if (_linkFd >= 0)
            Sys.Close(_linkFd);
        _linkFd = -1;
        if (_progFd >= 0)
            Sys.Close(_progFd);
        _progFd = -1;
        if (_mapFd >= 0)
            Sys.Close(_mapFd);
        _mapFd = -1;
    }
}
