namespace UnmanagedPool.Tests.Races;

/// <summary>
/// Lifecycle races whose failure ends the process (an access violation, an exception on a timer thread): each runs
/// in a child process (tests/PoolLoadChild <c>--race NAME</c>, see its RaceScenarios) so a failure fails the test
/// instead of the test host.
/// </summary>
public class ChildScenarioTests
{
    [Theory]
    [InlineData("idle-trim-unmap-throws")]    // issue 18 case 2
    [InlineData("from-address-vs-dispose")]   // issue 18 case 3
    [InlineData("stale-ref-packet-free")]     // issue 18 case 4
    public void The_scenario_is_handled_without_ending_the_process(string scenario)
    {
        (int exitCode, string output) = RaceChild.Run(scenario);
        Assert.True(exitCode == 0 && output.Contains("ok:"), $"exit code {exitCode}:\n{output}");
    }
}
