using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace UnmanagedPool.Internal;

/// <summary>
/// The first exception of a batch that goes on after a step throws (a release whose DMA unmap fails, a cache whose
/// emptying fails): every step runs, the first failure is kept, later ones are dropped, and it is rethrown at the
/// end with its original stack. Passed by <see langword="ref"/> between the steps of one batch; a default value
/// holds none.
/// </summary>
internal struct FirstException
{
    private Exception? _first;

    /// <summary>The kept exception, or <see langword="null"/> when no step threw.</summary>
    public readonly Exception? Value => _first;

    /// <summary>Keeps <paramref name="e"/> unless an earlier exception is already kept.</summary>
    public void Keep(Exception e) => _first ??= e;

    /// <summary>Rethrows the kept exception with its original stack; nothing when none was kept.</summary>
    public readonly void ThrowIfAny()
    {
        if (_first != null)
            Throw(_first);
    }

    /// <summary>Rethrows <paramref name="e"/> with its original stack when it is not <see langword="null"/>: the exception a batch step kept and returned.</summary>
    public static void ThrowIfNotNull(Exception? e)
    {
        if (e != null)
            Throw(e);
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)] // keeps the throw off the callers' code
    private static void Throw(Exception e) => ExceptionDispatchInfo.Throw(e);
}
