using UnmanagedPool.Native;
using UnmanagedPool.Stress;
using UnmanagedPool.Tests.Stress;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// The stress harness's driver-split operation (page_pool_fragment_netmem, then page_pool_unref_netmem of the
/// pieces never handed out, as mlx5e_page_release_fragmented) under the harness's ownership and cookie checks.
/// </summary>
public class StressSplitTests
{
    private static (int ExitCode, string Output) RunHarness(Func<StressPoolContext, IStressPool>? factory, params string[] extra)
    {
        var output = new StringWriter();
        string[] args = ["--threads", "2", "--duration", "2s", "--seed", "11", "--progress", "0", .. extra];
        int rc = UnmanagedPool.Stress.Program.Run(args, output, factory);
        return (rc, output.ToString());
    }

    [Fact]
    public void The_real_pool_passes_a_split_heavy_run_with_faults_and_pieces_put_from_other_threads()
    {
        var (rc, output) = RunHarness(null, "--mix", "split=30,alloc,put,cross,frag", "--fault-rate", "0.01");
        Assert.True(rc == 0, output);
        Assert.Contains("split=30", output);
        Assert.Contains("RESULT: PASS", output);
        Assert.Contains("[ok] no cookie mismatch", output);
        Assert.Contains("[ok] InFlight 0 after Dispose", output);
        Assert.DoesNotContain("[FAIL]", output);
    }

    [Fact]
    public void Split_is_in_the_default_mix_and_parses_by_name()
    {
        Assert.True(StressOptions.DefaultMix()[(int)StressOp.Split] > 0);
        double[] mix = StressOptions.ParseMix("split", []);
        Assert.Equal(4, mix[(int)StressOp.Split]);
        Assert.Equal(4, mix.Sum());
    }

    [Fact]
    public void A_driver_that_drains_one_reference_too_many_makes_the_harness_fail()
    {
        var (rc, output) = RunHarness(c => new OverDrainingPool(c), "--mix", "split=40,alloc,put");
        Assert.True(rc == 1, output);
        Assert.Contains("[FAIL]", output);
        Assert.Contains("RESULT: FAIL", output);
    }

    /// <summary>Drains the driver's own last reference too, then puts it anyway: a piece still out loses its reference.</summary>
    private sealed class OverDrainingPool(StressPoolContext context) : ForwardingPool(context), IStressPool
    {
        void IStressPool.ReleaseSplitPage(NetMemRef page, long unusedReferences)
        {
            PagePool pool = PagePool.FromPage(page)!;
            pool.UnrefPage(page, unusedReferences);
            Put(page, allowDirect: true);
        }
    }
}
