using System.Runtime.InteropServices;
using System.Text;

namespace UnmanagedPool.AfXdp.Interop;

/// <summary>
/// XDP over rtnetlink (a <c>NETLINK_ROUTE</c> socket): <c>RTM_SETLINK</c> with an <c>IFLA_XDP</c> nest attaches or
/// detaches a program the way <c>ip link set dev X xdp fd N</c> does, and <c>RTM_GETLINK</c> reads which program is
/// attached. Each call opens its own socket, sends one request and reads the kernel's answer up to its ack
/// (<c>NLMSG_ERROR</c>, with the extended ack's message text where the kernel gives one). Not a hot path.
/// </summary>
internal static unsafe class XdpNetlink
{
    // include/uapi/linux/rtnetlink.h, netlink.h, if_link.h.
    private const ushort RTM_NEWLINK = 16;
    private const ushort RTM_GETLINK = 18;
    private const ushort RTM_SETLINK = 19;
    private const ushort NLMSG_ERROR = 2;
    private const ushort NLM_F_REQUEST = 0x1;
    private const ushort NLM_F_ACK = 0x4;
    private const ushort NLM_F_CAPPED = 0x100;
    private const ushort NLM_F_ACK_TLVS = 0x200;
    private const ushort NLA_F_NESTED = 0x8000;
    private const ushort NLA_TYPE_MASK = 0x3fff;
    private const ushort IFLA_XDP = 43;
    private const ushort IFLA_XDP_FD = 1;
    private const ushort IFLA_XDP_ATTACHED = 2;
    private const ushort IFLA_XDP_FLAGS = 3;
    private const ushort IFLA_XDP_PROG_ID = 4;
    private const ushort IFLA_XDP_DRV_PROG_ID = 5;
    private const ushort IFLA_XDP_SKB_PROG_ID = 6;
    private const ushort IFLA_XDP_EXPECTED_FD = 8;
    private const ushort NLMSGERR_ATTR_MSG = 1;
    private const int NlMsgHdrSize = 16;
    private const int IfInfoMsgSize = 16;
    private const int SOL_SOCKET = 1;
    private const int SO_RCVTIMEO = 20;

    /// <summary><c>XDP_FLAGS_UPDATE_IF_NOEXIST</c>: fail with EBUSY when a program is already attached.</summary>
    public const uint XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0;

    /// <summary><c>XDP_FLAGS_SKB_MODE</c>: the generic hook.</summary>
    public const uint XDP_FLAGS_SKB_MODE = 1 << 1;

    /// <summary><c>XDP_FLAGS_DRV_MODE</c>: the driver's hook.</summary>
    public const uint XDP_FLAGS_DRV_MODE = 1 << 2;

    /// <summary><c>XDP_FLAGS_REPLACE</c>: act only when the attached program is <c>IFLA_XDP_EXPECTED_FD</c>'s.</summary>
    public const uint XDP_FLAGS_REPLACE = 1 << 4;

    private static int s_seq;

    /// <summary>
    /// <c>RTM_SETLINK</c> with <c>IFLA_XDP { IFLA_XDP_FD = fd, IFLA_XDP_FLAGS = flags [, IFLA_XDP_EXPECTED_FD] }</c>:
    /// attaches the program <paramref name="fd"/> (or detaches with -1) on interface <paramref name="ifIndex"/>.
    /// </summary>
    /// <param name="ifIndex">The interface.</param>
    /// <param name="fd">The program's descriptor, or -1 to detach.</param>
    /// <param name="flags"><c>XDP_FLAGS_*</c>.</param>
    /// <param name="expectedFd">With <see cref="XDP_FLAGS_REPLACE"/>: the program that must be attached now; -1: none sent.</param>
    /// <param name="kernelMessage">The extended ack's message, or null when the kernel gave none.</param>
    /// <returns>0, or the errno the kernel (or a socket call) answered.</returns>
    public static int SetXdp(int ifIndex, int fd, uint flags, int expectedFd, out string? kernelMessage)
    {
        byte* msg = stackalloc byte[64];
        new Span<byte>(msg, 64).Clear();
        int seq = Interlocked.Increment(ref s_seq); // Interlocked: two programs may attach from two threads at once
        int len = NlMsgHdrSize + IfInfoMsgSize;
        *(int*)(msg + NlMsgHdrSize + 4) = ifIndex;                        // ifinfomsg.ifi_index (family AF_UNSPEC)
        byte* nest = msg + len;
        len += 4;
        len = PutAttr(msg, len, IFLA_XDP_FD, fd);
        len = PutAttr(msg, len, IFLA_XDP_FLAGS, (int)flags);
        if (expectedFd >= 0)
            len = PutAttr(msg, len, IFLA_XDP_EXPECTED_FD, expectedFd);
        *(ushort*)nest = (ushort)(msg + len - nest);
        *(ushort*)(nest + 2) = IFLA_XDP | NLA_F_NESTED;
        WriteHeader(msg, len, RTM_SETLINK, seq);
        return Transact(msg, len, seq, null, out kernelMessage);
    }

    /// <summary>
    /// <c>RTM_GETLINK</c> of interface <paramref name="ifIndex"/>: the id of the XDP program attached to it (0 when
    /// none) and <c>IFLA_XDP_ATTACHED</c> (0 none, 1 driver, 2 generic, 3 offloaded, 4 several).
    /// </summary>
    /// <returns>0, or the errno.</returns>
    public static int QueryProgram(int ifIndex, out uint programId, out byte attached)
    {
        byte* msg = stackalloc byte[NlMsgHdrSize + IfInfoMsgSize];
        new Span<byte>(msg, NlMsgHdrSize + IfInfoMsgSize).Clear();
        int seq = Interlocked.Increment(ref s_seq); // Interlocked: see SetXdp
        *(int*)(msg + NlMsgHdrSize + 4) = ifIndex;
        WriteHeader(msg, NlMsgHdrSize + IfInfoMsgSize, RTM_GETLINK, seq);
        var found = new XdpState();
        int errno = Transact(msg, NlMsgHdrSize + IfInfoMsgSize, seq, found, out _);
        programId = found.ProgramId;
        attached = found.Attached;
        return errno;
    }

    private sealed class XdpState
    {
        public uint ProgramId;
        public byte Attached;
    }

    private static void WriteHeader(byte* msg, int len, ushort type, int seq)
    {
        *(uint*)msg = (uint)len;
        *(ushort*)(msg + 4) = type;
        *(ushort*)(msg + 6) = NLM_F_REQUEST | NLM_F_ACK;
        *(int*)(msg + 8) = seq;
    }

    private static int PutAttr(byte* msg, int at, ushort type, int value)
    {
        *(ushort*)(msg + at) = 8;
        *(ushort*)(msg + at + 2) = type;
        *(int*)(msg + at + 4) = value;
        return at + 8;
    }

    private static int Align4(int n) => (n + 3) & ~3;

    /// <summary>Sends the request and reads answers until the ack of <paramref name="seq"/>.</summary>
    private static int Transact(byte* request, int length, int seq, XdpState? link, out string? kernelMessage)
    {
        kernelMessage = null;
        int fd = Sys.Socket(Sys.AF_NETLINK, Sys.SOCK_RAW | Sys.SOCK_CLOEXEC, Sys.NETLINK_ROUTE);
        if (fd < 0)
            return Marshal.GetLastPInvokeError();
        try
        {
            int one = 1;
            // Best effort: the ack carries the kernel's message (EXT_ACK) and not a copy of the request (CAP_ACK).
            Sys.SetSockOpt(fd, Sys.SOL_NETLINK, Sys.NETLINK_EXT_ACK, &one, sizeof(int));
            Sys.SetSockOpt(fd, Sys.SOL_NETLINK, Sys.NETLINK_CAP_ACK, &one, sizeof(int));
            long* timeout = stackalloc long[2] { 5, 0 };  // struct timeval: an answer that never comes is an error, not a hang
            Sys.SetSockOpt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout, 2 * sizeof(long));

            var kernel = new Sys.SockaddrNl { Family = Sys.AF_NETLINK };
            if (Sys.SendTo(fd, request, (nuint)length, 0, &kernel, (uint)sizeof(Sys.SockaddrNl)) < 0)
                return Marshal.GetLastPInvokeError();

            byte[] buffer = new byte[32 << 10];
            fixed (byte* buf = buffer)
            {
                while (true)
                {
                    nint got = Sys.RecvFrom(fd, buf, (nuint)buffer.Length, 0, null, null);
                    if (got < 0)
                    {
                        int errno = Marshal.GetLastPInvokeError();
                        if (errno == Sys.EINTR)
                            continue;
                        return errno;
                    }
                    for (int at = 0; at + NlMsgHdrSize <= got;)
                    {
                        byte* m = buf + at;
                        int mlen = (int)*(uint*)m;
                        if (mlen < NlMsgHdrSize || at + mlen > got)
                            return Sys.EINVAL;                // a malformed answer
                        ushort type = *(ushort*)(m + 4);
                        ushort flags = *(ushort*)(m + 6);
                        if (*(int*)(m + 8) == seq)
                        {
                            if (type == NLMSG_ERROR)
                                return ReadAck(m, mlen, flags, out kernelMessage);
                            if (type == RTM_NEWLINK && link != null)
                                ReadLink(m, mlen, link);
                        }
                        at += Align4(mlen);
                    }
                }
            }
        }
        finally
        {
            Sys.Close(fd);
        }
    }

    /// <summary><c>struct nlmsgerr</c>: the negated errno, the request's header (and body unless capped), then the ack's TLVs.</summary>
    private static int ReadAck(byte* m, int mlen, ushort flags, out string? kernelMessage)
    {
        kernelMessage = null;
        if (mlen < NlMsgHdrSize + 4)
            return Sys.EINVAL;
        int error = *(int*)(m + NlMsgHdrSize);
        if ((flags & NLM_F_ACK_TLVS) != 0 && mlen >= NlMsgHdrSize + 4 + NlMsgHdrSize)
        {
            int at = NlMsgHdrSize + 4 + NlMsgHdrSize;
            if ((flags & NLM_F_CAPPED) == 0)
                at = NlMsgHdrSize + 4 + Align4((int)*(uint*)(m + NlMsgHdrSize + 4));
            for (; at + 4 <= mlen;)
            {
                int alen = *(ushort*)(m + at);
                ushort atype = (ushort)(*(ushort*)(m + at + 2) & NLA_TYPE_MASK);
                if (alen < 4 || at + alen > mlen)
                    break;
                if (atype == NLMSGERR_ATTR_MSG && alen > 4)
                    kernelMessage = Encoding.UTF8.GetString(new ReadOnlySpan<byte>(m + at + 4, alen - 4)).TrimEnd('\0').Trim();
                at += Align4(alen);
            }
        }
        return -error;
    }

    /// <summary>An <c>RTM_NEWLINK</c> answer: finds <c>IFLA_XDP</c> after the <c>ifinfomsg</c> and reads its nest.</summary>
    private static void ReadLink(byte* m, int mlen, XdpState link)
    {
        for (int at = NlMsgHdrSize + IfInfoMsgSize; at + 4 <= mlen;)
        {
            int alen = *(ushort*)(m + at);
            ushort atype = (ushort)(*(ushort*)(m + at + 2) & NLA_TYPE_MASK);
            if (alen < 4 || at + alen > mlen)
                return;
            if (atype == IFLA_XDP)
            {
                for (int n = at + 4; n + 4 <= at + alen;)
                {
                    int nlen = *(ushort*)(m + n);
                    ushort ntype = (ushort)(*(ushort*)(m + n + 2) & NLA_TYPE_MASK);
                    if (nlen < 4 || n + nlen > at + alen)
                        break;
                    if (ntype == IFLA_XDP_ATTACHED && nlen >= 5)
                        link.Attached = m[n + 4];
                    else if (ntype is IFLA_XDP_PROG_ID or IFLA_XDP_DRV_PROG_ID or IFLA_XDP_SKB_PROG_ID && nlen >= 8 && link.ProgramId == 0)
                        link.ProgramId = *(uint*)(m + n + 4);
                    n += Align4(nlen);
                }
            }
            at += Align4(alen);
        }
    }
}
