using UnmanagedPool.Native;

namespace UnmanagedPool;

// Memory<byte> interop: pooled PageMemoryManager wrappers.
public sealed unsafe partial class PagePool
{
    /// <summary>Most <see cref="PageMemoryManager"/> objects a pool keeps for reuse (arbitrary).</summary>
    public const int MemoryWrapperCacheSize = 256;

    private readonly Lock _wrapperLock = new();
    private readonly PageMemoryManager?[] _wrappers = new PageMemoryManager?[MemoryWrapperCacheSize];
    private int _wrapperCount;  // guarded by _wrapperLock

    /// <summary>
    /// A pooled <see cref="PageMemoryManager"/> over <paramref name="length"/> bytes at <paramref name="offset"/>
    /// of <paramref name="page"/> (a page or fragment of this pool), taking over the caller's reference. Disposing
    /// it puts the reference and returns the wrapper for reuse (not in debug mode), so the caller must not use or
    /// dispose it again after Dispose: <see cref="PagePoolMemoryPool"/> gives out wrappers that are never reused.
    /// Any thread.
    /// </summary>
    /// <exception cref="InvalidOperationException">Not this pool's page, or not referenced.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The range does not lie inside the page.</exception>
    public PageMemoryManager WrapMemory(NetMemRef page, int offset, int length)
    {
        CheckOwned(page);
        PageMemoryManager? m = null;
        lock (_wrapperLock)
        {
            if (_wrapperCount > 0)
            {
                m = _wrappers[--_wrapperCount];
                _wrappers[_wrapperCount] = null;
            }
        }
        m ??= new PageMemoryManager(this);
        try
        {
            m.Set(page, offset, length);
        }
        catch
        {
            ReturnMemoryWrapper(m);
            throw;
        }
        return m;
    }

    internal void ReturnMemoryWrapper(PageMemoryManager m)
    {
        // Debug mode never reuses a wrapper, so a second Dispose by a holder that kept it is always caught
        // (ObjectDisposedException) instead of disposing the next holder's buffer.
        if (_debug)
            return;
        lock (_wrapperLock)
        {
            if (_wrapperCount < _wrappers.Length)
                _wrappers[_wrapperCount++] = m;
        }
    }
}
