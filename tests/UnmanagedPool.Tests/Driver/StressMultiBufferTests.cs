using UnmanagedPool.Native;
using UnmanagedPool.Stress;
using UnmanagedPool.Tests.Stress;

namespace UnmanagedPool.Tests.Driver;

/// <summary>
/// The stress harness's multi-buffer operation (xdp_buff_add_frag, then xdp_return_buff, xdp_return_frame,
/// xdp_return_frame_rx_napi, xdp_return_frame_bulk here or on another thread, or xdp_build_skb_from_buff and a
/// free) and its split operation draining with page_pool_unref_netmem and page_pool_put_unrefed_netmem, under the
/// harness's ownership and cookie checks.
/// </summary>
public class StressMultiBufferTests
{
    private static (int ExitCode, string Output) RunHarness(Func<StressPoolContext, IStressPool>? factory, params string[] extra)
    {
        var output = new StringWriter();
        string[] args = ["--threads", "2", "--duration", "2s", "--seed", "13", "--progress", "0", .. extra];
        int rc = UnmanagedPool.Stress.Program.Run(args, output, factory);
        return (rc, output.ToString());
    }

    [Fact]
    public void The_real_pool_passes_a_multi_buffer_heavy_run_with_faults_disposes_and_frames_returned_on_other_threads()
    {
        var (rc, output) = RunHarness(null, "--mix", "mbuf=30,split=10,alloc,put,cross,packet,dispose", "--fault-rate", "0.01");
        Assert.True(rc == 0, output);
        Assert.Contains("mbuf=30", output);
        Assert.Contains("RESULT: PASS", output);
        Assert.Contains("[ok] no double hand-out", output);
        Assert.Contains("[ok] no cookie mismatch", output);
        Assert.Contains("[ok] InFlight 0 after Dispose", output);
        Assert.DoesNotContain("[FAIL]", output);
    }

    [Fact]
    public void Mbuf_is_in_the_default_mix_and_parses_by_either_name()
    {
        Assert.True(StressOptions.DefaultMix()[(int)StressOp.MultiBuffer] > 0);
        Assert.Equal(4, StressOptions.ParseMix("mbuf", [])[(int)StressOp.MultiBuffer]);
        Assert.Equal(7, StressOptions.ParseMix("multi-buffer=7", [])[(int)StressOp.MultiBuffer]);
        Assert.Equal("mbuf", StressOptions.NameOf(StressOp.MultiBuffer));
    }

    [Fact]
    public void A_driver_that_gives_the_split_page_back_twice_after_dropping_its_last_reference_makes_the_harness_fail()
    {
        // page_pool_unref_netmem returned 0: the caller owns the page alone and gives it back once
        // (page_pool_put_unrefed_netmem); a second put is a double free the harness must catch.
        var (rc, output) = RunHarness(c => new DoublePutAfterUnrefPool(c), "--mix", "split=40,alloc,put");
        Assert.True(rc == 1, output);
        Assert.Contains("RESULT: FAIL", output);
    }

    private sealed class DoublePutAfterUnrefPool(StressPoolContext context) : ForwardingPool(context), IStressPool
    {
        void IStressPool.ReleaseSplitPage(NetMemRef page, long unusedReferences)
        {
            PagePool pool = PagePool.FromPage(page)!;
            if (pool.UnrefPage(page, unusedReferences) == 0)
            {
                pool.PutUnrefedPage(page, -1, allowDirect: true);
                pool.PutPage(page, -1, allowDirect: true);
            }
        }
    }
}
