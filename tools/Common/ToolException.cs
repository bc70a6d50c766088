namespace UnmanagedPool.Tools;

/// <summary>
/// An error to report as one <c>error: …</c> line on stderr and an exit code, instead of a stack trace. Thrown by a
/// command's action; <see cref="ToolCommandLine.Invoke"/> reports it.
/// </summary>
public class ToolException(string message, int exitCode = ExitCodes.Failed) : Exception(message)
{
    /// <summary>The exit code to leave with.</summary>
    public int ExitCode { get; } = exitCode;

    /// <summary>A usage or value error (exit code 2).</summary>
    public static ToolException Usage(string message) => new(message, ExitCodes.Usage);
}
