namespace PacketProcessor.Drivers;

/// <summary>A driver could not start: a message for the user and the process exit code to leave with.</summary>
public sealed class DriverException(int exitCode, string message) : Exception(message)
{
    /// <summary>
    /// Exit code: 1 no such interface, 3 missing privileges, 4 another system error, 6 no XDP (or no zero-copy) on
    /// the interface, 7 a queue past the interface's queues, 8 the interface or queue is busy (2 is a usage error,
    /// 5 buffers not given back at exit).
    /// </summary>
    public int ExitCode { get; } = exitCode;

    /// <summary>Exit code of a usage error the driver finds (an option the interface cannot honour).</summary>
    public const int Usage = 2;

    /// <summary>Exit code when the interface does not exist.</summary>
    public const int NoInterface = 1;

    /// <summary>Exit code when AF_PACKET needs privileges the process lacks.</summary>
    public const int NoPrivileges = 3;

    /// <summary>Exit code for any other failure to open the driver.</summary>
    public const int SystemError = 4;

    /// <summary>Exit code when the interface (or its driver, in the mode asked for) has no XDP or AF_XDP zero-copy.</summary>
    public const int NoXdp = 6;

    /// <summary>Exit code when a queue index is past the interface's receive queues.</summary>
    public const int NoSuchQueue = 7;

    /// <summary>Exit code when another XDP program or AF_XDP socket holds the interface or queue.</summary>
    public const int Busy = 8;
}
