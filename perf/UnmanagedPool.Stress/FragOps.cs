#if HAS_FRAGMENTS
using System.Diagnostics;
using UnmanagedPool.Native;

namespace UnmanagedPool.Stress;

// The fragment and packet operations of the mix: fragments from PagePoolConsumer.AllocFrag (pp_ref_count per
// fragment, each put back with PutPage), and packets (UnmanagedPool.Packet) built from them and freed.
internal sealed unsafe partial class StressWorker
{
    private const int MaxPacketFrags = 4;
    private readonly HeldPage[] _packetFrags = new HeldPage[MaxPacketFrags];
    private readonly Packet _packet = new();

    /// <summary>A fragment just handed out: write the owner cookie at both ends of its bytes.</summary>
    private HeldPage TakeFragment(NetMemRef page, int offset, int size)
    {
        UsedFragments = true;
        ulong cookie = NextCookie();
        byte* a = page.Address + offset;
        *(ulong*)a = cookie;
        *(ulong*)(a + size - sizeof(ulong)) = ~cookie;
        PageOps++;
        return new HeldPage { Page = page, Cookie = cookie, Pool = Pool, PoolIndex = -1, FragOffset = offset, FragSize = size };
    }

    /// <summary>A random fragment size: 16 B to 2 KiB, 8-byte aligned (the cookies need 16 B).</summary>
    private int FragmentSize() => 16 + 8 * _random.NextInt((2048 - 16) / 8 + 1);

    /// <summary>frag: one fragment, held like a page (put back later, here or by another thread).</summary>
    private void DoFrag()
    {
        if (_heldCount >= _held.Length)
        {
            DoPut();
            return;
        }
        int size = FragmentSize();
        long t0 = Stopwatch.GetTimestamp();
        NetMemRef page = Pool.AllocFrag(size, out int offset);
        Stress.Latency.Record(Latency[(int)LatencyKind.Alloc], Stopwatch.GetTimestamp() - t0);
        if (page.IsNull)
        {
            AllocFailed();
            return;
        }
        _held[_heldCount++] = TakeFragment(page, offset, size);
    }

    /// <summary>
    /// packet: a head fragment and up to three more (an skb with page frags), released together; one packet in
    /// four is handed to another thread fragment by fragment, as a packet freed on another CPU.
    /// </summary>
    private void DoPacket()
    {
        HeldPage[] frags = _packetFrags;
        int n = 1 + _random.NextInt(MaxPacketFrags);
        int got = 0;
        for (int i = 0; i < n; i++)
        {
            int size = i == 0 ? 256 + 8 * _random.NextInt(32) : FragmentSize();
            long t0 = Stopwatch.GetTimestamp();
            NetMemRef page = Pool.AllocFrag(size, out int offset);
            Stress.Latency.Record(Latency[(int)LatencyKind.Alloc], Stopwatch.GetTimestamp() - t0);
            if (page.IsNull)
            {
                AllocFailed();
                break;
            }
            frags[got++] = TakeFragment(page, offset, size);
        }
        if (got == 0)
            return;
        StressWorker? other = (_random.Next() & 3) == 0 ? RandomOther() : null;
        if (other != null && other.Inbox.Count < InboxLimit)
        {
            for (int i = 0; i < got; i++)
                other.Inbox.Enqueue(frags[i]);
            return;
        }
        // An skb with page frags (pp_recycle set), freed here: every reference goes back through Packet.Free.
        Packet packet = _packet;
        for (int i = 0; i < got; i++)
        {
            CheckBeforeReturn(frags[i]);
            if (i == 0)
                packet.SetHead(frags[i].Page, frags[i].FragOffset, frags[i].FragSize);
            else
                packet.AddFrag(frags[i].Page, frags[i].FragOffset, frags[i].FragSize);
        }
        packet.MarkForRecycle();
        long start = Stopwatch.GetTimestamp();
        packet.Free();
        Stress.Latency.Record(Latency[(int)LatencyKind.Put], Stopwatch.GetTimestamp() - start);
    }
}
#endif
