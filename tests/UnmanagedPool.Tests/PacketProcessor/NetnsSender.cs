using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace UnmanagedPool.Tests.PacketProcessor;

/// <summary>
/// Sends UDP datagrams from inside a named network namespace (<c>ip netns add NAME</c>): a dedicated thread joins
/// the namespace with <c>setns(2)</c>, opens its socket there and ends when done, so no other thread of the test
/// process leaves the namespace it started in. Needs root (CAP_SYS_ADMIN).
/// </summary>
internal static partial class NetnsSender
{
    private const int CloneNewNet = 0x40000000;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);

    /// <summary>
    /// Sends <paramref name="count"/> datagrams of 32 bytes (the index, big-endian, eight times) from namespace
    /// <paramref name="netns"/> to <paramref name="address"/>:<paramref name="port"/>, pausing 2 ms after every 100.
    /// </summary>
    public static void SendUdp(string netns, string address, ushort port, int count)
    {
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                // File.OpenHandle, not FileStream: a namespace file cannot seek, which FileStream's handle getter tries.
                using (SafeFileHandle ns = File.OpenHandle($"/var/run/netns/{netns}", FileMode.Open, FileAccess.Read))
                {
                    if (setns((int)ns.DangerousGetHandle(), CloneNewNet) != 0)
                        throw new InvalidOperationException($"setns({netns}) failed: errno {Marshal.GetLastPInvokeError()}.");
                }
                // Opened after setns: the socket belongs to the namespace this thread is in now.
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                var target = new IPEndPoint(IPAddress.Parse(address), port);
                var payload = new byte[32];
                for (int i = 0; i < count; i++)
                {
                    for (int k = 0; k < payload.Length; k += 4)
                        BinaryPrimitives.WriteInt32BigEndian(payload.AsSpan(k), i);
                    socket.SendTo(payload, target);
                    if (i % 100 == 99)
                        Thread.Sleep(2);
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        { Name = $"netns-sender-{netns}", IsBackground = true };
        thread.Start();
        if (!thread.Join(TimeSpan.FromSeconds(60)))
            throw new TimeoutException($"The sender in {netns} did not finish in 60 s.");
        if (failure != null)
            throw new InvalidOperationException($"The sender in {netns} failed.", failure);
    }
}
