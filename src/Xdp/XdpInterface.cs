using System.Runtime.InteropServices;
using UnmanagedPool.AfXdp.Interop;

namespace UnmanagedPool.AfXdp;

/// <summary>What AF_XDP needs to know about a network interface: its index and its receive queues.</summary>
public static class XdpInterface
{
    /// <summary>The interface's index.</summary>
    /// <exception cref="XdpException">No such interface (<see cref="XdpError.NoSuchInterface"/>).</exception>
    public static int IndexOf(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        uint index = Sys.IfNameToIndex(name);
        if (index == 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new XdpException(XdpError.NoSuchInterface, errno, $"No network interface named '{name}' ({Sys.Describe(errno)}).");
        }
        return (int)index;
    }

    /// <summary>The interface's receive queues (<c>/sys/class/net/NAME/queues/rx-*</c>); 1 when sysfs does not say.</summary>
    public static int RxQueueCount(string name)
    {
        string dir = $"/sys/class/net/{name}/queues";
        try
        {
            int n = Directory.GetDirectories(dir, "rx-*").Length;
            return n > 0 ? n : 1;
        }
        catch (IOException)
        {
            return 1;
        }
        catch (UnauthorizedAccessException)
        {
            return 1;
        }
    }
}
