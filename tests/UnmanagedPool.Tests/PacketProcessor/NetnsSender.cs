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

    private const int AfPacket = 17;
    private const int SockRaw = 3;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int socket(int domain, int type, int protocol);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int bind(int fd, void* address, int length);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint send(int fd, void* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial uint if_nametoindex(string name);

    /// <summary>
    /// Sends <paramref name="count"/> datagrams of 32 bytes (the index, big-endian, eight times) from namespace
    /// <paramref name="netns"/> to <paramref name="address"/>:<paramref name="port"/>, pausing 2 ms after every 100.
    /// </summary>
    public static void SendUdp(string netns, string address, ushort port, int count) => InNamespace(netns, () =>
    {
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
    });

    /// <summary>
    /// Sends <paramref name="count"/> raw Ethernet frames of <paramref name="length"/> bytes out of interface
    /// <paramref name="ifname"/> in namespace <paramref name="netns"/> (an AF_PACKET socket bound to it), pausing
    /// 2 ms after every 100; <paramref name="fill"/> writes frame i.
    /// </summary>
    public static void SendRaw(string netns, string ifname, int count, int length, Action<int, byte[]> fill) => InNamespace(netns, () =>
    {
        uint ifindex = if_nametoindex(ifname);
        if (ifindex == 0)
            throw new InvalidOperationException($"No interface {ifname} in {netns}: errno {Marshal.GetLastPInvokeError()}.");
        int fd = socket(AfPacket, SockRaw, 0); // protocol 0: sends only, receives nothing
        if (fd < 0)
            throw new InvalidOperationException($"socket(AF_PACKET) failed: errno {Marshal.GetLastPInvokeError()}.");
        try
        {
            unsafe
            {
                // struct sockaddr_ll: family, protocol (be16), ifindex, hatype, pkttype, halen, addr[8]: 20 bytes.
                byte* sll = stackalloc byte[20];
                new Span<byte>(sll, 20).Clear();
                *(ushort*)sll = AfPacket;
                *(int*)(sll + 4) = (int)ifindex;
                if (bind(fd, sll, 20) != 0)
                    throw new InvalidOperationException($"bind(AF_PACKET, {ifname}) failed: errno {Marshal.GetLastPInvokeError()}.");
                var frame = new byte[length];
                fixed (byte* p = frame)
                {
                    for (int i = 0; i < count; i++)
                    {
                        fill(i, frame);
                        if (send(fd, p, (nuint)length, 0) != length)
                            throw new InvalidOperationException($"send on {ifname} failed: errno {Marshal.GetLastPInvokeError()}.");
                        if (i % 100 == 99)
                            Thread.Sleep(2);
                    }
                }
            }
        }
        finally
        {
            close(fd);
        }
    });

    /// <summary>Runs <paramref name="body"/> on a thread of its own that joined namespace <paramref name="netns"/> first (bounded: 60 s).</summary>
    private static void InNamespace(string netns, Action body)
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
                body();
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
