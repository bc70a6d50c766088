using PacketProcessor.Cli;
using PacketProcessor.Drivers;
using PacketProcessor.Engine;
using PacketProcessor.Frames;
using PacketProcessor.Programs;

namespace UnmanagedPool.Tests.PacketProcessor;

public class CliTests
{
    [Fact]
    public void Imix_and_weighted_lists_parse_and_bad_mixes_say_why()
    {
        Assert.True(SizeMix.TryParse("imix", out SizeMix? imix, out _));
        Assert.Same(SizeMix.Imix, imix);
        Assert.True(SizeMix.TryParse("64:3, 1518", out SizeMix? list, out _));
        Assert.Equal([(64, 3), (1518, 1)], list!.Entries);
        Assert.False(SizeMix.TryParse("20", out _, out string? e1));
        Assert.Contains("60..9018", e1);
        Assert.False(SizeMix.TryParse("64:0", out _, out string? e2));
        Assert.Contains("weight", e2);
        Assert.False(SizeMix.TryParse(",", out _, out _));
    }

    [Fact]
    public void The_generator_is_deterministic_and_respects_the_mix()
    {
        var a = new FrameGenerator(SizeMix.Imix, seed: 7);
        var b = new FrameGenerator(SizeMix.Imix, seed: 7);
        for (int i = 0; i < FrameGenerator.TemplateCount; i++)
        {
            Assert.Equal(a.Template(i), b.Template(i));
            Assert.Contains(a.Template(i).Length, new[] { 64, 576, 1518 });
            Assert.Equal(ParseResult.Udp, FrameParser.ParseUdp(a.Template(i), out ushort port));
            Assert.Equal(FrameGenerator.BasePort + (i & 3), port);
        }
    }

    [Theory]
    [InlineData("--program", "nope")]
    [InlineData("--driver", "tap")]
    [InlineData("--pool", "heap")]
    [InlineData("--duration", "soon")]
    [InlineData("--mix", "9019")]
    [InlineData("--size", "20")]
    public void Bad_values_are_parse_errors(string option, string value)
    {
        var result = global::PacketProcessor.Program.BuildCommand().Parse([option, value]);
        Assert.NotEmpty(result.Errors);
    }

    [Fact]
    public void The_defaults_are_synthetic_drop_one_queue_ten_seconds_on_pagepool()
    {
        var o = new ProcessorOptions();
        Assert.Equal(DriverKind.Synthetic, o.Driver);
        Assert.Equal(ProgramKind.Drop, o.Program);
        Assert.Equal(1, o.Queues);
        Assert.Equal(TimeSpan.FromSeconds(10), o.Duration);
        Assert.Equal(BufferPoolKind.PagePool, o.Pool);
        Assert.Empty(global::PacketProcessor.Program.BuildCommand().Parse([]).Errors);
    }

    [Fact]
    public void A_missing_interface_exits_with_code_2_and_says_so()
    {
        if (!OperatingSystem.IsLinux())
            return;
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = global::PacketProcessor.Program.Execute(
            new ProcessorOptions { Driver = DriverKind.AfPacket, Interface = "upp-nonexist0", Duration = TimeSpan.FromSeconds(1) },
            json: false, quiet: true, stdout, stderr);
        Assert.Equal(DriverException.NoInterface, code);
        Assert.Contains("'upp-nonexist0' does not exist", stderr.ToString());
    }

    [Fact]
    public void Afpacket_without_an_interface_is_a_usage_error()
    {
        var stderr = new StringWriter();
        int code = global::PacketProcessor.Program.Execute(new ProcessorOptions { Driver = DriverKind.AfPacket }, false, true, new StringWriter(), stderr);
        Assert.Equal(2, code);
        Assert.Contains("--interface", stderr.ToString());
    }

    [Fact]
    public void A_short_run_prints_a_summary_with_the_pool_counters_and_inflight_zero()
    {
        var stdout = new StringWriter();
        int code = global::PacketProcessor.Program.Execute(new ProcessorOptions { Duration = TimeSpan.FromMilliseconds(200) }, false, true, stdout, new StringWriter());
        string text = stdout.ToString();
        Assert.Equal(0, code);
        foreach (string row in new[] { "alloc fast", "alloc slow", "alloc slow high order", "alloc empty", "alloc refill", "alloc waive",
                     "recycle cached", "recycle cache full", "recycle ring", "recycle ring full", "recycle released refcnt", "hold", "release", "inflight" })
            Assert.Contains(row, text);
        Assert.Contains("InFlight 0", text);
        // Plain text into a writer that is not a terminal; no bit rate for the synthetic NIC, which writes 64 B of each frame.
        Assert.DoesNotContain("\u001b", text, StringComparison.Ordinal);
        Assert.DoesNotContain("Gbit/s", text);
    }

    [Fact]
    public void Json_output_is_a_document_with_the_rate_and_per_queue_pool_statistics()
    {
        var stdout = new StringWriter();
        int code = global::PacketProcessor.Program.Execute(new ProcessorOptions { Queues = 2, Duration = TimeSpan.FromMilliseconds(200) }, true, true, stdout, new StringWriter());
        Assert.Equal(0, code);
        using var doc = System.Text.Json.JsonDocument.Parse(stdout.ToString());
        Assert.True(doc.RootElement.GetProperty("mpps").GetDouble() > 0);
        Assert.Equal(0, doc.RootElement.GetProperty("inFlight").GetInt64());
        Assert.Equal(2, doc.RootElement.GetProperty("perQueue").GetArrayLength());
        Assert.True(doc.RootElement.GetProperty("perQueue")[0].GetProperty("pagePool").GetProperty("allocFast").GetInt64() > 0);
    }

    [Fact]
    public void Printing_progress_from_the_main_thread_leaves_the_packet_path_at_zero_managed_bytes()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        // Long enough for at least one progress line (printed once a second from the thread that called Run).
        int code = global::PacketProcessor.Program.Execute(new ProcessorOptions { Duration = TimeSpan.FromSeconds(2.5) }, json: true, quiet: false, stdout, stderr);
        Assert.Equal(0, code);
        Assert.Contains("s]", stderr.ToString());
        Assert.Contains(" rx ", stderr.ToString());
        using var doc = System.Text.Json.JsonDocument.Parse(stdout.ToString());
        Assert.Equal(0, doc.RootElement.GetProperty("allocatedBytes").GetInt64());
    }
}
