using PacketProcessor.Drivers;
using PacketProcessor.Engine;
using PacketProcessor.Programs;

namespace UnmanagedPool.Tests.PacketProcessor;

/// <summary>
/// <c>--busy-poll</c> (the kernel's <c>net.core.busy_poll</c>): a queue on a real interface keeps polling an empty
/// ring for the budget before it sleeps in <c>poll(2)</c>, and with 0 it sleeps at once.
/// </summary>
public class BusyPollTests
{
    /// <summary>A real-interface stand-in that never has a frame and counts the sleeps it is asked for.</summary>
    private sealed class IdleNic : NicQueue
    {
        public int Waits;

        public override int Receive(Span<RxBuf> posted, int capacity) => 0;

        public override int Transmit(ReadOnlySpan<RxBuf> frames) => frames.Length;

        public override bool WaitsWhenIdle => true;

        public override void WaitForTraffic(int timeoutMs) => Waits++;
    }

    private static int SleepsOverEmptyPolls(int busyPollMicroseconds, int polls)
    {
        var nic = new IdleNic();
        var queue = new RxQueue<PagePoolBuffers, DropProgram>(0, 1, 64, nic, new DropProgram()) { BusyPollMicroseconds = busyPollMicroseconds };
        int loops = 0;
        using var phases = new Barrier(1);
        using var ready = new CountdownEvent(1);
        queue.Run([queue], () => ++loops > polls, phases, ready);
        Assert.True(queue.PoolFreed);
        return nic.Waits;
    }

    [Fact]
    public void Without_busy_polling_every_empty_poll_sleeps()
    {
        Assert.Equal(2000, SleepsOverEmptyPolls(0, 2000));
    }

    [Fact]
    public void Within_the_budget_an_empty_ring_is_polled_again_not_slept_on()
    {
        // 2000 empty polls take well under a millisecond of CPU; a one-second budget never runs out.
        Assert.Equal(0, SleepsOverEmptyPolls(ProcessorOptions.MaxBusyPollMicroseconds, 2000));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(ProcessorOptions.MaxBusyPollMicroseconds + 1)]
    public void A_budget_outside_zero_to_one_second_is_refused_with_the_option_named(int microseconds)
    {
        var options = new ProcessorOptions { BusyPollMicroseconds = microseconds };
        Assert.Contains("--busy-poll", options.Validate());
    }

    [Fact]
    public void The_option_parses_and_defaults_to_zero()
    {
        Assert.Equal(0, new ProcessorOptions().BusyPollMicroseconds);
        Assert.Empty(global::PacketProcessor.Program.BuildCommand().Parse(["--busy-poll", "50"]).Errors);
    }
}
