using System.Diagnostics;
using PacketProcessor.Engine;
using PacketProcessor.Programs;

namespace UnmanagedPool.Tests.PacketProcessor;

/// <summary>A fact that runs only as root on Linux with <c>ip</c> at hand (CI runs as root); skipped with the reason otherwise.</summary>
public sealed class RootNetnsFactAttribute : FactAttribute
{
    public RootNetnsFactAttribute()
    {
        if (!OperatingSystem.IsLinux())
            Skip = "Needs Linux (AF_PACKET, network namespaces).";
        else if (Environment.UserName != "root" && !IsUid0())
            Skip = "Needs root: creates a network namespace and a veth pair, and opens AF_PACKET sockets (CI runs as root).";
        else if (Find("ip") == null)
            Skip = "Needs the `ip` command (iproute2).";
    }

    private static bool IsUid0()
    {
        try
        {
            return File.ReadLines("/proc/self/status").Any(l => l.StartsWith("Uid:", StringComparison.Ordinal) && l.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1] == "0");
        }
        catch (IOException)
        {
            return false;
        }
    }

    internal static string? Find(string command) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':')
            .Concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
            .Select(d => Path.Combine(d, command)).FirstOrDefault(File.Exists);
}

/// <summary>
/// Real traffic: a veth pair with one end in a fresh network namespace; a sender there sends N UDP datagrams to
/// the host end, where the processor runs the afpacket driver with the count program.
/// </summary>
public class AfPacketIntegrationTests
{
    private const int Count = 2000;
    private const ushort Port = 47_123;

    [RootNetnsFact]
    public void Count_over_afpacket_receives_every_datagram_sent_through_a_veth_pair_and_leaves_nothing_in_flight()
    {
        int pid = Environment.ProcessId;
        string ns = $"upp-test-{pid}";
        string host = $"upph{pid % 10_000_000}";
        string peer = $"uppp{pid % 10_000_000}";
        // Both addresses live only on this test's own veth pair inside its own namespace.
        byte subnet = (byte)(pid % 200 + 20);
        string hostIp = $"10.231.{subnet}.1";
        string peerIp = $"10.231.{subnet}.2";
        try
        {
            Ip($"netns add {ns}");
            Ip($"link add {host} type veth peer name {peer}");
            Ip($"link set {peer} netns {ns}");
            Ip($"addr add {hostIp}/24 dev {host}");
            Ip($"link set {host} up");
            Ip($"netns exec {ns} ip addr add {peerIp}/24 dev {peer}");
            Ip($"netns exec {ns} ip link set {peer} up");
            Ip($"netns exec {ns} ip link set lo up");

            var options = new ProcessorOptions
            {
                Driver = DriverKind.AfPacket,
                Interface = host,
                Queues = 2,
                Program = ProgramKind.Count,
                Port = Port,
                Duration = TimeSpan.FromSeconds(20),
            };
            using var processor = new Processor(options);
            var run = BackgroundProcessor.Start(processor);

            // A small paced sender inside the namespace: the veth queue and the socket buffers take the burst without loss.
            NetnsSender.SendUdp(ns, hostIp, Port, Count);

            var wait = Stopwatch.StartNew();
            while (processor.Matched < Count && wait.Elapsed < TimeSpan.FromSeconds(15))
                Thread.Sleep(20);
            run.Stop();
            ProcessorResult result = run.Result;
            Assert.Equal(Count, result.Matched);
            Assert.Equal(0, result.InFlight);
            Assert.All(result.Queues, q =>
            {
                Assert.Equal(0, q.InFlight);
                Assert.Equal(q.Pool!.Value.Hold, q.Pool.Value.Release);
            });
            Assert.True(result.RxPackets >= Count);
        }
        finally
        {
            // Deleting the namespace deletes the peer, and with it the host end of the pair.
            TryIp($"netns del {ns}");
            TryIp($"link del {host}");
        }
    }

    internal static string FindIp() => RootNetnsFactAttribute.Find("ip") ?? "ip";

    internal static void Ip(string args) => Run(FindIp(), args.Split(' '));

    internal static void TryIp(string args)
    {
        try
        {
            Run(FindIp(), args.Split(' '), check: false);
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
        }
    }

    internal static void Run(string file, string[] args, bool check = true)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(20_000))
        {
            p.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} timed out.");
        }
        if (check && p.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({p.ExitCode}): {err}");
    }
}
