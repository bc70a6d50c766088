using System.Buffers;
using System.Runtime.CompilerServices;

namespace PacketProcessor.Engine;

/// <summary>
/// The same queue on <see cref="ArrayPool{T}.Shared"/> arrays, for comparison: one Rent per posted buffer and one
/// Return per dropped, transmitted, passed or redirected frame, on whichever thread finishes with it.
/// </summary>
internal struct ArrayPoolBuffers : IBufferOps
{
    /// <summary>Headroom plus the largest frame, rounded to the pool's power-of-two bucket.</summary>
    public const int ArrayBufferSize = 2048;

    private QueueBase _queue;

    public readonly int BufferSize => ArrayBufferSize;

    public void Attach(QueueBase queue) => _queue = queue;

    public readonly int Refill(Span<RxBuf> slots)
    {
        ArrayPool<byte> pool = ArrayPool<byte>.Shared;
        int origin = _queue.Index;
        for (int i = 0; i < slots.Length; i++)
        {
            ref RxBuf b = ref slots[i];
            b.Array = pool.Rent(ArrayBufferSize);
            b.Origin = origin;
        }
        _queue.ArraysRented += slots.Length;
        return slots.Length;
    }

    /// <summary>Arrays are never mapped for a device: nothing to sync.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void SyncForCpu(ref RxBuf b)
    {
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Recycle(ref RxBuf b)
    {
        ArrayPool<byte>.Shared.Return(b.Array!);
        b.Array = null;
        _queue.ArraysReturnedHere++;
    }

    public readonly bool TryPass(ref RxBuf b)
    {
        if (!_queue.PassRing.TryWrite(new PassItem { Array = b.Array }))
            return false;
        b.Array = null;
        return true;
    }

    public readonly bool TryPass(in UnmanagedPool.XdpBuff xdp) =>
        throw new NotSupportedException("Multi-buffer frames need page-pool buffers.");

    public readonly bool TryToRedirect(ref RxBuf b, out RedirectItem item)
    {
        item = new RedirectItem { Array = b.Array, Len = b.Len, Origin = b.Origin };
        return true;
    }

    public readonly RxBuf TxView(in RedirectItem item) => new() { Array = item.Array, Len = item.Len, Origin = item.Origin };

    public readonly void ReturnRedirected(Span<RedirectItem> items, QueueBase[] queues)
    {
        ArrayPool<byte> pool = ArrayPool<byte>.Shared;
        Span<int> returned = stackalloc int[queues.Length];
        foreach (ref RedirectItem item in items)
        {
            pool.Return(item.Array!);
            item.Array = null;
            returned[item.Origin]++;
        }
        for (int q = 0; q < returned.Length; q++)
        {
            if (returned[q] == 0)
                continue;
            if (q == _queue.Index)
                _queue.ArraysReturnedHere += returned[q];
            else
                // Interlocked: other queues' threads and the worker count returns of that queue's arrays too.
                Interlocked.Add(ref queues[q].ArraysReturnedElsewhere, returned[q]);
        }
    }

    public readonly void Detach()
    {
    }
}
