using UnmanagedPool.Stress;

namespace UnmanagedPool.Tests.Stress;

public class StressHarnessTests
{
    private static (int ExitCode, string Output) RunHarness(Func<StressPoolContext, IStressPool>? factory, params string[] extra)
    {
        var output = new StringWriter();
        string[] args = ["--threads", "2", "--duration", "2s", "--seed", "7", "--progress", "0", .. extra];
        int rc = UnmanagedPool.Stress.Program.Run(args, output, factory);
        return (rc, output.ToString());
    }

    [Fact]
    public void The_real_pool_passes_a_short_run_with_faults_injected_and_exits_zero()
    {
        var (rc, output) = RunHarness(null, "--fault-rate", "0.01");
        Assert.True(rc == 0, output);
        Assert.Contains("RESULT: PASS", output);
        Assert.Contains("[ok] no double hand-out", output);
        Assert.Contains("[ok] counters consistent", output);
        Assert.DoesNotContain("[FAIL]", output);
        // Redirected output is plain: the section markers scripts look for, no escape codes, no box characters.
        Assert.Contains("\n== result after ", output);
        Assert.Contains("latency (ns)", output);
        Assert.DoesNotContain("\u001b", output, StringComparison.Ordinal);
        Assert.DoesNotContain("\u2502", output, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pool_that_hands_a_page_out_twice_makes_the_harness_exit_non_zero_naming_double_hand_out()
    {
        var (rc, output) = RunHarness(c => new DoubleHandOutPool(c), "--mix", "alloc,put,bulk=20");
        Assert.True(rc == 1, output);
        Assert.Contains("[FAIL] no double hand-out", output);
        Assert.Contains(ViolationNames.DoubleHandOut, output);
        Assert.Contains("RESULT: FAIL", output);
    }

    [Fact]
    public void A_pool_that_corrupts_a_held_page_makes_the_harness_exit_non_zero_naming_cookie_mismatch()
    {
        var (rc, output) = RunHarness(c => new CookieCorruptingPool(c), "--mix", "alloc,put");
        Assert.True(rc == 1, output);
        Assert.Contains("[FAIL] no cookie mismatch", output);
        Assert.Contains(ViolationNames.CookieMismatch, output);
        Assert.Contains("RESULT: FAIL", output);
    }

    [Fact]
    public void An_unknown_mix_operation_is_a_usage_error()
    {
        var (rc, output) = RunHarness(null, "--mix", "alloc,teleport");
        Assert.Equal(2, rc);
        Assert.Contains("unknown operation 'teleport'", output);
    }

    [Fact]
    public void Fragment_operations_are_recognised_and_skipped_with_a_note_when_the_build_lacks_them()
    {
        var notes = new List<string>();
        double[] mix = StressOptions.ParseMix("alloc,put,frag,packet", notes);
        if (StressOptions.FragmentsAvailable)
        {
            Assert.True(mix[(int)StressOp.Frag] > 0);
            Assert.Empty(notes);
        }
        else
        {
            Assert.Equal(0, mix[(int)StressOp.Frag]);
            Assert.Equal(0, mix[(int)StressOp.Packet]);
            Assert.Equal(2, notes.Count(n => n.Contains("not available in this build")));
        }
    }

    [Fact]
    public void The_latency_histograms_report_quantiles_within_their_precision_never_below_and_record_without_allocating()
    {
        var h = Latency.NewHistogram();
        Latency.Record(h, 0);   // warm the path: the first call may JIT
        h.Reset();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 1; i <= 1000; i++)
            Latency.Record(h, i * 10);
        Latency.Record(h, -5);                             // a clock step back counts as 0
        Latency.Record(h, long.MaxValue);                  // past the range counts as the largest tracked value
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
        Assert.Equal(1002, h.TotalCount);
        Assert.InRange(Latency.At(h, 50), 5000, 5000 + 5000 / 500);
        Assert.InRange(Latency.At(h, 99), 9900, 9900 + 9900 / 500);
        Assert.InRange(Latency.Max(h), Latency.HighestTrackable, Latency.HighestTrackable + Latency.HighestTrackable / 1000);
        Assert.Equal(0, Latency.At(Latency.NewHistogram(), 99));
    }

    [Fact]
    public void The_fault_injector_fails_about_the_asked_fraction_and_repeats_itself_for_a_seed()
    {
        var a = new RandomFaultInjector(0.1, 42);
        var b = new RandomFaultInjector(0.1, 42);
        int failures = 0;
        for (int i = 0; i < 100_000; i++)
        {
            bool fa = a.ShouldFail(0);
            Assert.Equal(fa, b.ShouldFail(0));
            failures += fa ? 1 : 0;
        }
        Assert.InRange(failures, 9_000, 11_000);
    }
}
