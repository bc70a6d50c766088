using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// The raw-address forms of the <see cref="PagePool"/> and <see cref="PagePoolConsumer"/> page calls (the kernel's
/// <c>void *</c> / <c>struct page *</c> forms next to its <c>netmem_ref</c> ones): each finds the page that holds the
/// address (<see cref="NetMemRef.FromAddress(void*)"/>, O(1)) and does what the <see cref="NetMemRef"/> method does.
/// Called as the pool's own methods: <c>pool.PutPage(address)</c>, <c>consumer.RecycleDirect(address)</c>.
/// </summary>
/// <remarks>
/// An address that lies in no live page of a region throws <see cref="InvalidOperationException"/> before anything
/// is changed. The <see cref="NetMemRef"/> methods skip that lookup; a hot path that already holds the
/// <see cref="NetMemRef"/> should pass it.
/// </remarks>
public static unsafe class PagePoolPointerExtensions
{
    // =====================================================================================================
    // PagePool
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_alloc_va</c>: <see cref="PagePool.Alloc(int, out int)"/> as an address; null when
    /// memory is exhausted. Thread rules as <see cref="PagePool.Alloc(int, out int)"/>.
    /// </summary>
    /// <param name="pool">The pool.</param>
    /// <param name="size">Bytes wanted: 1..<see cref="PagePool.UsableSize"/>.</param>
    /// <returns>The first byte of the buffer or piece; free it with <see cref="PagePool.FreeVa"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="pool"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is not in 1..<see cref="PagePool.UsableSize"/>.</exception>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    public static byte* AllocVa(this PagePool pool, int size)
    {
        ArgumentNullException.ThrowIfNull(pool);
        NetMemRef page = pool.Alloc(size, out int offset);
        return page.IsNull ? null : page.Address + offset;
    }

    /// <summary>
    /// The kernel's <c>page_pool_fragment_page</c>: <see cref="PagePool.FragmentPage(NetMemRef, long)"/> for a raw
    /// address inside the page.
    /// </summary>
    /// <param name="pool">The pool.</param>
    /// <param name="address">Any address inside a page of this pool held by its only reference.</param>
    /// <param name="nr">References the page carries from now on: 1..<see cref="PagePool.BiasMax"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="pool"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nr"/> is not in 1..<see cref="PagePool.BiasMax"/>.</exception>
    /// <exception cref="InvalidOperationException">
    /// The address is in no live page of a region, or see <see cref="PagePool.FragmentPage(NetMemRef, long)"/>.
    /// </exception>
    public static void FragmentPage(this PagePool pool, byte* address, long nr)
    {
        ArgumentNullException.ThrowIfNull(pool);
        pool.FragmentPage(PagePool.ResolveAddress(address), nr);
    }

    /// <summary>
    /// The kernel's <c>page_pool_put_page</c>: <see cref="PagePool.PutPage(NetMemRef, int, bool)"/> for a raw
    /// address anywhere inside the page.
    /// </summary>
    /// <param name="pool">The pool.</param>
    /// <param name="address">Any address inside a page of this pool.</param>
    /// <param name="dmaSyncSize">Bytes the device may have written, synced for the device on recycle (DmaSyncDev); -1 for <see cref="PagePoolOptions.MaxLen"/>.</param>
    /// <param name="allowDirect">Recycle into the alloc cache; honoured only on the consumer thread.</param>
    /// <exception cref="ArgumentNullException"><paramref name="pool"/> is null.</exception>
    /// <exception cref="InvalidOperationException">
    /// The address is in no live page of a region, or see <see cref="PagePool.PutPage(NetMemRef, int, bool)"/>.
    /// </exception>
    public static void PutPage(this PagePool pool, byte* address, int dmaSyncSize = -1, bool allowDirect = false)
    {
        ArgumentNullException.ThrowIfNull(pool);
        pool.PutPageAt(address, dmaSyncSize, allowDirect);
    }

    /// <summary>
    /// The kernel's <c>page_pool_put_full_page</c>: <see cref="PagePool.PutFullPage(NetMemRef, bool)"/> for a raw
    /// address inside the page.
    /// </summary>
    /// <param name="pool">The pool.</param>
    /// <param name="address">Any address inside a page of this pool.</param>
    /// <param name="allowDirect">Recycle into the alloc cache; honoured only on the consumer thread.</param>
    /// <exception cref="ArgumentNullException"><paramref name="pool"/> is null.</exception>
    /// <exception cref="InvalidOperationException">
    /// The address is in no live page of a region, or see <see cref="PagePool.PutPage(NetMemRef, int, bool)"/>.
    /// </exception>
    public static void PutFullPage(this PagePool pool, byte* address, bool allowDirect = false)
    {
        ArgumentNullException.ThrowIfNull(pool);
        pool.PutPageAt(address, -1, allowDirect);
    }

    /// <summary>
    /// The kernel's <c>page_pool_recycle_direct</c>: <see cref="PagePool.RecycleDirect(NetMemRef)"/> for a raw
    /// address inside the page (direct recycling is honoured only on the consumer thread).
    /// </summary>
    /// <param name="pool">The pool.</param>
    /// <param name="address">Any address inside a page of this pool.</param>
    /// <exception cref="ArgumentNullException"><paramref name="pool"/> is null.</exception>
    /// <exception cref="InvalidOperationException">
    /// The address is in no live page of a region, or see <see cref="PagePool.PutPage(NetMemRef, int, bool)"/>.
    /// </exception>
    public static void RecycleDirect(this PagePool pool, byte* address)
    {
        ArgumentNullException.ThrowIfNull(pool);
        pool.PutPageAt(address, -1, allowDirect: true);
    }

    /// <summary>
    /// The kernel's <c>page_pool_unref_netmem</c> / <c>page_pool_unref_page</c>:
    /// <see cref="PagePool.UnrefPage(NetMemRef, long)"/> for a raw address inside the page.
    /// </summary>
    /// <param name="pool">The pool.</param>
    /// <param name="address">Any address inside a page of this pool.</param>
    /// <param name="nr">References to drop: at least 1.</param>
    /// <returns>References left, as <see cref="PagePool.UnrefPage(NetMemRef, long)"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="pool"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nr"/> is not positive.</exception>
    /// <exception cref="InvalidOperationException">
    /// The address is in no live page of a region, or see <see cref="PagePool.UnrefPage(NetMemRef, long)"/>.
    /// </exception>
    public static long UnrefPage(this PagePool pool, byte* address, long nr)
    {
        ArgumentNullException.ThrowIfNull(pool);
        return pool.UnrefPage(PagePool.ResolveAddress(address), nr);
    }

    /// <summary>
    /// The kernel's <c>page_pool_release_page</c> / <c>page_pool_return_page</c>:
    /// <see cref="PagePool.ReleasePage(NetMemRef)"/> for a raw address inside the page.
    /// </summary>
    /// <param name="pool">The pool.</param>
    /// <param name="address">Any address inside a page of this pool held by its only reference.</param>
    /// <exception cref="ArgumentNullException"><paramref name="pool"/> is null.</exception>
    /// <exception cref="InvalidOperationException">
    /// The address is in no live page of a region, or see <see cref="PagePool.ReleasePage(NetMemRef)"/>.
    /// </exception>
    public static void ReleasePage(this PagePool pool, byte* address)
    {
        ArgumentNullException.ThrowIfNull(pool);
        pool.ReleasePage(PagePool.ResolveAddress(address));
    }

    // =====================================================================================================
    // PagePoolConsumer (a default handle throws NullReferenceException, as its own methods do)
    // =====================================================================================================

    /// <summary>
    /// The kernel's <c>page_pool_alloc_va</c> in NAPI context: <see cref="PagePoolConsumer.Alloc(int, out int)"/>
    /// as an address; null when memory is exhausted.
    /// </summary>
    /// <param name="consumer">The consumer thread's handle.</param>
    /// <param name="size">Bytes wanted: 1..<see cref="PagePool.UsableSize"/>.</param>
    /// <returns>The first byte of the buffer or piece; free it with <see cref="PagePoolConsumer.FreeVa"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is not in 1..<see cref="PagePool.UsableSize"/>.</exception>
    /// <exception cref="ObjectDisposedException">The pool has been disposed.</exception>
    public static byte* AllocVa(this PagePoolConsumer consumer, int size)
    {
        NetMemRef page = consumer.Alloc(size, out int offset, out _);
        return page.IsNull ? null : page.Address + offset;
    }

    /// <summary>
    /// The kernel's <c>page_pool_put_page</c> in NAPI context: <see cref="PagePoolConsumer.PutPage(NetMemRef, int, bool)"/>
    /// for a raw address inside the page.
    /// </summary>
    /// <param name="consumer">The consumer thread's handle.</param>
    /// <param name="address">Any address inside a page of the handle's pool.</param>
    /// <param name="dmaSyncSize">Bytes the device may have written, synced for the device on recycle (DmaSyncDev); -1 for <see cref="PagePoolOptions.MaxLen"/>.</param>
    /// <param name="allowDirect">Recycle into the alloc cache (the default here, as the consumer thread may).</param>
    /// <exception cref="InvalidOperationException">
    /// The address is in no live page of a region, or see <see cref="PagePool.PutPage(NetMemRef, int, bool)"/>.
    /// </exception>
    public static void PutPage(this PagePoolConsumer consumer, byte* address, int dmaSyncSize = -1, bool allowDirect = true) =>
        consumer.Pool.ConsumerPutAt(consumer, address, dmaSyncSize, allowDirect);

    /// <summary>
    /// The kernel's <c>page_pool_recycle_direct</c>: <see cref="PagePoolConsumer.RecycleDirect(NetMemRef)"/> for a
    /// raw address inside the page.
    /// </summary>
    /// <param name="consumer">The consumer thread's handle.</param>
    /// <param name="address">Any address inside a page of the handle's pool.</param>
    /// <exception cref="InvalidOperationException">
    /// The address is in no live page of a region, or see <see cref="PagePoolConsumer.RecycleDirect(NetMemRef)"/>.
    /// </exception>
    public static void RecycleDirect(this PagePoolConsumer consumer, byte* address) =>
        consumer.Pool.ConsumerPutAt(consumer, address, -1, allowDirect: true);
}
