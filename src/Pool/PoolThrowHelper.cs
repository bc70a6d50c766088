using System.Diagnostics.CodeAnalysis;
using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>Cold throw sites of the pool, out of line so hot callers stay small.</summary>
internal static unsafe class PoolThrowHelper
{
    [DoesNotReturn]
    public static void ThrowNotOurs(NetMemRef page, nint pp, long poolId)
    {
        if (page.IsNull)
            throw new InvalidOperationException($"PagePool {poolId}: cannot put a null page.");
        NetMem* d = page.Descriptor;
        if ((d->PpMagic & NetMemRef.PpMagicMask) != NetMemRef.PpSignature)
            throw new InvalidOperationException(
                $"PagePool {poolId}: page 0x{(nint)page.Address:x} is not a page-pool page (pp_magic 0x{d->PpMagic:x}).");
        throw new InvalidOperationException(
            $"PagePool {poolId}: page 0x{(nint)page.Address:x} belongs to another pool (pp 0x{d->Pp:x}, this pool 0x{pp:x}).");
    }

    [DoesNotReturn]
    public static void ThrowDoublePut(NetMemRef page) =>
        throw new InvalidOperationException(
            $"Page 0x{(nint)page.Address:x}: pp_ref_count underflow: the page was put more times than it was referenced (double put).");

    [DoesNotReturn]
    public static void ThrowNotSoleOwner(NetMemRef page) =>
        throw new InvalidOperationException(
            $"Page 0x{(nint)page.Address:x}: ReleasePage needs the only reference (pp_ref_count {page.Value.PpRefCount}).");

    [DoesNotReturn]
    public static void ThrowInPoolTwice(NetMemRef page, long poolId) =>
        throw new InvalidOperationException(
            $"PagePool {poolId}: page 0x{(nint)page.Address:x} was found in the pool while in use (pp_ref_count {page.Value.PpRefCount}): " +
            "it was put twice (two puts at the same moment, or a put after it came back). The extra entry was dropped; the page was not handed out again.");

    [DoesNotReturn]
    public static void ThrowStillReferenced(NetMemRef page) =>
        throw new InvalidOperationException(
            $"Page 0x{(nint)page.Address:x}: PutUnrefedPage needs a page whose references UnrefPage dropped to 0 (pp_ref_count {page.Value.PpRefCount}).");

    [DoesNotReturn]
    public static void ThrowForeignAddress(byte* address) =>
        throw new InvalidOperationException($"Address 0x{(nint)address:x} is not inside any page of a live region.");

    [DoesNotReturn]
    public static void ThrowDisposed(long poolId) =>
        throw new ObjectDisposedException($"PagePool {poolId}", "The page pool has been disposed.");

    [DoesNotReturn]
    public static void ThrowNotConsumer(long poolId, string method) =>
        throw new InvalidOperationException($"PagePool {poolId}: {method} must be called on the consumer thread.");
}
