using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UnmanagedPool.Native;

namespace UnmanagedPool.Perf;

/// <summary>An unsynchronised LIFO of descriptors: the least a pool can do.</summary>
internal sealed unsafe class LifoFloor(int capacity)
{
    private readonly nint[] _items = new nint[capacity];
    private int _count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NetMem* Get()
    {
        int c = --_count;
        NetMem* d = (NetMem*)Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_items), c);
        d->PpRefCount = 1;
        return d;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Return(NetMem* d)
    {
        int c = _count;
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_items), c) = (nint)d;
        _count = c + 1;
    }
}
