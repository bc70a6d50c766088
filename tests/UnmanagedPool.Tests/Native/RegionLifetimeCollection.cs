namespace UnmanagedPool.Tests.Native;

/// <summary>
/// Tests that free a region and then look up addresses that were inside it. They run alone: a region created by
/// a test running beside them could be placed at the freed address and make the lookup succeed.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RegionLifetimeCollection
{
    public const string Name = "Region lifetime";
}
