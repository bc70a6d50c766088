using PacketProcessor.Bench;

namespace UnmanagedPool.Tests.PacketProcessor;

public class BenchTableTests
{
    [Theory]
    [InlineData(new[] { 3.0 }, 3.0)]
    [InlineData(new[] { 5.0, 1.0, 3.0 }, 3.0)]
    [InlineData(new[] { 4.0, 1.0, 3.0, 2.0 }, 2.5)]
    public void The_median_is_the_middle_value_or_the_mean_of_the_middle_two(double[] values, double median) =>
        Assert.Equal(median, BenchTable.Median(values));

    [Fact]
    public void The_table_has_a_row_per_pagepool_cell_with_the_arraypool_median_and_the_ratio()
    {
        var runs = new Dictionary<BenchCell, List<double>>
        {
            [new("drop", 1, true, "pagepool")] = [100, 120, 110],
            [new("drop", 1, true, "arraypool")] = [20, 22, 21],
            [new("redirect", 2, true, "pagepool")] = [30, 10, 20],
            [new("redirect", 2, true, "arraypool")] = [5, 5, 5],
            [new("redirect", 2, false, "pagepool")] = [40],
        };
        string[] lines = BenchTable.Format(runs).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(
        [
            "| program | queues | redirected as | pagepool Mpps | arraypool Mpps | pagepool / arraypool |",
            "|---|---|---|---|---|---|",
            "| drop | 1 | - | 110.0 | 21.0 | 5.2x |",
            "| redirect | 2 | XdpFrame | 20.0 | 5.0 | 4.0x |",
            "| redirect | 2 | bare page | 40.0 | 5.0 | 8.0x |",
        ], lines);
    }

    [Fact]
    public void The_bench_reads_its_run_length_with_the_shared_duration_syntax()
    {
        var command = global::PacketProcessor.Bench.Program.BuildCommand(TextWriter.Null, TextWriter.Null);
        Assert.Equal(TimeSpan.FromSeconds(90), command.Parse(["--duration", "1m30s"]).GetValue<TimeSpan>("--duration"));
        Assert.Equal(TimeSpan.FromSeconds(3), command.Parse(["--duration", "3"]).GetValue<TimeSpan>("--duration"));
        Assert.NotEmpty(command.Parse(["--duration", "5x"]).Errors);
    }
}
