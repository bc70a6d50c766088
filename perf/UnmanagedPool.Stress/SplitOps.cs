using System.Diagnostics;
using UnmanagedPool.Native;

namespace UnmanagedPool.Stress;

// The driver-split operation: a worker splits whole pages itself as mlx5 does (page_pool_fragment_netmem with a
// bias once, pieces handed out, the bias of the pieces never handed out drained with page_pool_unref_netmem), and
// the pieces go back with PutPage from this thread or another.
internal sealed unsafe partial class StressWorker
{
    /// <summary>References set on a page the worker splits (mlx5's MLX5E_PAGECNT_BIAS_MAX, PAGE_SIZE / 64).</summary>
    private const long SplitBias = 64;

    private readonly HeldPage[] _splitPieces = new HeldPage[4];

    /// <summary>split: a page cut into 2 or 4 pieces, some handed out, the rest dropped by the "driver" and drained.</summary>
    private void DoSplit()
    {
        if (_heldCount + 4 > _held.Length)
        {
            DoPut();
            return;
        }
        IStressPool pool = Pool;
        // The whole page passes the double hand-out check and its cookie check now; from here on each piece carries
        // its own cookie, as a fragment does (the bitmap knows pages, not pieces).
        if (!TryAllocDirectAndTake(pool, out HeldPage whole))
            return;
        NetMemRef page = whole.Page;
        CheckBeforeReturn(whole);
        UsedFragments = true;

        int pieces = (_random.Next() & 1) == 0 ? 2 : 4;
        int size = page.Size / pieces;
        pool.FragmentPage(page, SplitBias);
        // The pieces handed out; the others the driver drops itself (XDP_DROP): their references stay in the bias.
        int handedOut = _random.NextInt(pieces + 1);
        for (int k = 0; k < handedOut; k++)
        {
            ulong cookie = NextCookie();
            int offset = k * size;
            byte* a = page.Address + offset;
            *(ulong*)a = cookie;
            *(ulong*)(a + size - sizeof(ulong)) = ~cookie;
            PageOps++;
            _splitPieces[k] = new HeldPage { Page = page, Cookie = cookie, Pool = pool, PoolIndex = -1, FragOffset = offset, FragSize = size };
        }
        // The page is used up: the driver drops the references it still holds (the bias less the pieces out).
        long t0 = Stopwatch.GetTimestamp();
        pool.ReleaseSplitPage(page, SplitBias - handedOut);
        Stress.Latency.Record(Latency[(int)LatencyKind.Put], Stopwatch.GetTimestamp() - t0);
        // The pieces go on as fragments: held here and put later, or sent to another worker, which puts them.
        StressWorker? other = (_random.Next() & 3) == 0 ? RandomOther() : null;
        for (int k = 0; k < handedOut; k++)
        {
            if (other != null && other.Inbox.Count < InboxLimit)
                other.Inbox.Enqueue(_splitPieces[k]);
            else
                _held[_heldCount++] = _splitPieces[k];
        }
    }
}
