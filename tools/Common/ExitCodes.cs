namespace UnmanagedPool.Tools;

/// <summary>
/// Exit codes shared by the command-line programs. A program may add its own from 3 up and documents them in its
/// help and in the README.
/// </summary>
public static class ExitCodes
{
    /// <summary>Done, and every check held.</summary>
    public const int Ok = 0;

    /// <summary>The run failed: a check did not hold, or what the command names (a process, a file, an interface) is missing or unusable.</summary>
    public const int Failed = 1;

    /// <summary>A usage or value error: an unknown option, a value out of range, a malformed duration.</summary>
    public const int Usage = 2;
}
