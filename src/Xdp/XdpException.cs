using UnmanagedPool.AfXdp.Interop;

namespace UnmanagedPool.AfXdp;

/// <summary>Why an AF_XDP or bpf(2) step failed, in the terms a user acts on.</summary>
public enum XdpError
{
    /// <summary>Any other failure; see <see cref="XdpException.Errno"/>.</summary>
    Other = 0,

    /// <summary>The process lacks the privilege (root, or CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF).</summary>
    PermissionDenied,

    /// <summary>No interface of that name or index.</summary>
    NoSuchInterface,

    /// <summary>The interface (or its driver, in the mode asked for) does not support XDP or AF_XDP zero-copy.</summary>
    NotSupported,

    /// <summary>The queue index is past the interface's receive queues.</summary>
    QueueOutOfRange,

    /// <summary>The queue or interface is busy: another XDP program or AF_XDP socket holds it.</summary>
    Busy,

    /// <summary>The kernel's verifier refused the program; the message carries its log.</summary>
    VerifierRejected,
}

/// <summary>A failed AF_XDP or bpf(2) step: what was tried, errno, and the <see cref="XdpError"/> it means.</summary>
public sealed class XdpException : IOException
{
    /// <summary>Creates the exception.</summary>
    public XdpException(XdpError error, int errno, string message)
        : base(message)
    {
        Error = error;
        Errno = errno;
    }

    /// <summary>The classified failure.</summary>
    public XdpError Error { get; }

    /// <summary>The errno the kernel returned (0 when the failure was found before a system call).</summary>
    public int Errno { get; }

    internal static XdpException FromErrno(string what, int errno, XdpError? error = null, string? kernelMessage = null)
    {
        XdpError kind = error ?? errno switch
        {
            Sys.EPERM or Sys.EACCES => XdpError.PermissionDenied,
            Sys.ENODEV or Sys.ENXIO => XdpError.NoSuchInterface,
            Sys.EOPNOTSUPP or Sys.EAFNOSUPPORT => XdpError.NotSupported,
            Sys.EBUSY or Sys.EEXIST => XdpError.Busy,
            _ => XdpError.Other,
        };
        string hint = kind switch
        {
            XdpError.PermissionDenied => " (run as root, or grant CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF)",
            XdpError.Busy => " (another XDP program or AF_XDP socket holds it)",
            _ => "",
        };
        string said = string.IsNullOrEmpty(kernelMessage) ? "" : $": the kernel says \"{kernelMessage}\"";
        return new XdpException(kind, errno, $"{what}: {Sys.Describe(errno)} (errno {errno}){said}{hint}.");
    }
}
