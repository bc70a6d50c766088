using System.Buffers;
using UnmanagedPool.Native;

namespace UnmanagedPool;

/// <summary>
/// A <see cref="MemoryManager{T}"/> (and so an <see cref="IMemoryOwner{T}"/>) over a page or a fragment of one:
/// the bytes are native, so <see cref="Pin"/> returns the address with no GC pinning. The manager owns one page
/// reference; <see cref="IDisposable.Dispose"/> puts it (a pool page to its pool, any other page to its provider).
/// </summary>
/// <remarks>
/// Managers made by <see cref="PagePool.WrapMemory"/> are pooled: after Dispose the object goes back to a small
/// stack in the pool and is handed out again, so steady state allocates nothing. As with any pooled buffer, a
/// <see cref="Memory{T}"/> kept after Dispose may see someone else's bytes, and disposing twice throws only while
/// the object is not yet reused (in debug mode wrappers are never reused, so it always throws). Managers given
/// out by <see cref="PagePoolMemoryPool.Rent"/> and made with the public constructor are never reused: a second
/// Dispose always throws <see cref="ObjectDisposedException"/>.
/// </remarks>
public sealed unsafe class PageMemoryManager : MemoryManager<byte>
{
    private const int StateFree = 0;
    private const int StateOwned = 1;

    private readonly PagePool? _home;
    private NetMemRef _page;
    private byte* _pointer;
    private int _offset;
    private int _length;
    private int _state;

    /// <summary>
    /// A manager, not pooled, over <paramref name="length"/> bytes at <paramref name="offset"/> of
    /// <paramref name="page"/>, taking over the caller's reference on the page.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The range does not lie inside the page.</exception>
    public PageMemoryManager(NetMemRef page, int offset, int length)
    {
        Set(page, offset, length);
    }

    internal PageMemoryManager(PagePool home) => _home = home;

    internal void Set(NetMemRef page, int offset, int length)
    {
        if (page.IsNull)
            throw new ArgumentException("The page is null.", nameof(page));
        if (offset < 0 || length < 0 || (long)offset + length > page.Size)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"Offset {offset} + length {length} must lie inside the {page.Size}-byte page.");
        _page = page;
        _offset = offset;
        _length = length;
        _pointer = page.Address + offset;
        // Volatile: the fields above are visible before the manager counts as owned on another thread.
        Volatile.Write(ref _state, StateOwned);
    }

    /// <summary>The page (head of the run) the memory lies in.</summary>
    public NetMemRef Page => _page;

    /// <summary>Offset of the memory in the page.</summary>
    public int Offset => _offset;

    /// <summary>Bytes of memory.</summary>
    public int Length => _length;

    /// <summary>Whether the manager still owns its page reference.</summary>
    public bool IsOwned => Volatile.Read(ref _state) == StateOwned;

    /// <inheritdoc />
    /// <exception cref="ObjectDisposedException">The manager was disposed.</exception>
    public override Span<byte> GetSpan()
    {
        if (_state != StateOwned)
            FragThrowHelper.ThrowOwnerDisposed();
        return new Span<byte>(_pointer, _length);
    }

    /// <summary>The address of byte <paramref name="elementIndex"/>; native memory needs no pinning.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="elementIndex"/> lies outside the memory.</exception>
    /// <exception cref="ObjectDisposedException">The manager was disposed.</exception>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        if (_state != StateOwned)
            FragThrowHelper.ThrowOwnerDisposed();
        if ((uint)elementIndex > (uint)_length)
            throw new ArgumentOutOfRangeException(nameof(elementIndex));
        return new MemoryHandle(_pointer + elementIndex);
    }

    /// <summary>Nothing to do: the memory never moves.</summary>
    public override void Unpin()
    {
    }

    /// <summary>Puts the page reference and, for a pooled manager, returns the object to its pool.</summary>
    /// <exception cref="ObjectDisposedException">Already disposed (and not handed out again since).</exception>
    protected override void Dispose(bool disposing)
    {
        // Interlocked: Dispose from two threads must put the page once.
        if (Interlocked.Exchange(ref _state, StateFree) != StateOwned)
            FragThrowHelper.ThrowOwnerDisposed();
        NetMemRef page = _page;
        _page = default;
        // _pointer and _length are left as they were: a GetSpan racing this Dispose on another thread, past its
        // state check, builds its span from the old pair, which still lies in mapped page memory (regions are
        // never unmapped), rather than from a null pointer with the old length.
        Packet.PutPageRef(page, ppRecycle: true);
        _home?.ReturnMemoryWrapper(this);
    }

    /// <inheritdoc />
    public override string ToString() => $"PageMemoryManager(0x{(nint)_pointer:x}, {_length})";
}
