using UnmanagedPool.Tools;

namespace UnmanagedPool.PoolStat;

/// <summary>An error to report to the user as one line, with an exit code, instead of a stack trace.</summary>
internal sealed class PoolStatException(string message, int exitCode = ExitCodes.Failed) : ToolException(message, exitCode);
