using System.Buffers;
using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// A <see cref="MemoryPool{T}"/> of native pool memory, for <c>System.IO.Pipelines</c>
/// (<c>new Pipe(new PipeOptions(pool: ...))</c>) and anything else that rents <see cref="IMemoryOwner{T}"/>.
/// <see cref="Rent"/> takes a fragment or a whole buffer with <see cref="PagePool.Alloc(int, out int, out int)"/>
/// and wraps it in a new <see cref="PageMemoryManager"/>; disposing the owner puts the page back.
/// </summary>
/// <remarks>
/// Thread-safe: a pipe rents on its writer's thread and disposes on its reader's. On the pool's consumer thread
/// fragments are cut without a lock; elsewhere under the pool's shared-fragment lock. Each rent allocates its
/// owner object (one small object, as <see cref="MemoryPool{T}.Shared"/> does) and nothing else: an owner is
/// never handed to a second renter, so disposing it twice throws <see cref="ObjectDisposedException"/> and can
/// never dispose someone else's buffer, whenever the second Dispose comes.
/// </remarks>
public sealed class PagePoolMemoryPool : MemoryPool<byte>
{
    private readonly bool _ownsPool;
    private int _disposed;

    /// <summary>A memory pool over <paramref name="pool"/>; <paramref name="ownsPool"/> disposes it with this one.</summary>
    public PagePoolMemoryPool(PagePool pool, bool ownsPool = false)
    {
        ArgumentNullException.ThrowIfNull(pool);
        Pool = pool;
        _ownsPool = ownsPool;
    }

    /// <summary>A memory pool over a new <see cref="PagePool"/> made from <paramref name="options"/>, disposed with it.</summary>
    public PagePoolMemoryPool(PagePoolOptions options) : this(new PagePool(options), ownsPool: true)
    {
    }

    /// <summary>The page pool memory comes from.</summary>
    public PagePool Pool { get; }

    /// <summary>The largest rent: a whole buffer less <see cref="PagePoolOptions.Offset"/>.</summary>
    public override int MaxBufferSize => Pool.UsableSize;

    /// <summary>
    /// Memory of at least <paramref name="minBufferSize"/> bytes (the whole usable buffer for -1): a fragment when
    /// twice the size fits in a buffer, else a whole buffer. The memory may be longer than asked (truesize).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minBufferSize"/> is below -1 or above <see cref="MaxBufferSize"/>.</exception>
    /// <exception cref="OutOfMemoryException">The pool's provider has no memory left.</exception>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        int max = Pool.UsableSize;
        if (minBufferSize == -1)
            minBufferSize = max;
        else if ((uint)minBufferSize > (uint)max)
            throw new ArgumentOutOfRangeException(nameof(minBufferSize), minBufferSize, $"A rent is -1 or 0..{max} bytes.");
        NetMemRef page = Pool.Alloc(Math.Max(minBufferSize, 1), out int offset, out int trueSize);
        if (page.IsNull)
            throw new OutOfMemoryException($"PagePool {Pool.Id}: the provider has no memory left.");
        // A fresh owner per rent: a pooled one could be disposed a second time by its previous renter after it
        // was handed out again, disposing the new renter's buffer.
        try
        {
            return new PageMemoryManager(page, offset, trueSize);
        }
        catch
        {
            Packet.PutPageRef(page, ppRecycle: true);
            throw;
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        // Interlocked: Dispose may be called twice, from any thread.
        if (Interlocked.Exchange(ref _disposed, 1) == 0 && _ownsPool)
            Pool.Dispose();
    }
}
