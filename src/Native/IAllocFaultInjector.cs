namespace UnmanagedPool.Native;

/// <summary>
/// Decides whether a page allocation from a <see cref="PageProvider"/> fails on purpose, so tests can drive the
/// pool's slow path into its failure branch (the kernel's <c>pp_alloc_fail</c> fault-injection point).
/// Called under the provider's lock, once per run (page or order-n block) asked for.
/// </summary>
public interface IAllocFaultInjector
{
    /// <summary>Returns true to make the allocation of one run of <paramref name="order"/> fail.</summary>
    bool ShouldFail(int order);
}
