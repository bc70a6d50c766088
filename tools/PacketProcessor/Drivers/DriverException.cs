namespace PacketProcessor.Drivers;

/// <summary>A driver could not start: a message for the user and the process exit code to leave with.</summary>
public sealed class DriverException(int exitCode, string message) : Exception(message)
{
    /// <summary>Exit code: 1 no such interface, 3 missing privileges, 4 another system error (2 is a usage error).</summary>
    public int ExitCode { get; } = exitCode;

    /// <summary>Exit code when the interface does not exist.</summary>
    public const int NoInterface = 1;

    /// <summary>Exit code when AF_PACKET needs privileges the process lacks.</summary>
    public const int NoPrivileges = 3;

    /// <summary>Exit code for any other failure to open the driver.</summary>
    public const int SystemError = 4;
}
