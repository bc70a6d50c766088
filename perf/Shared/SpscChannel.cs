namespace UnmanagedPool.Perf;

/// <summary>
/// A bounded single-producer single-consumer ring used only to hand pages to the worker, built so that its own
/// cost stays small and the same whichever pool runs on either side of it:
/// <list type="bullet">
/// <item>capacity a power of two, so a slot is found with a mask, not a division;</item>
/// <item>each side publishes its index in batches (<see cref="PublishEvery"/>) on a cache line of its own, and
/// keeps its working state on another, so the other side's polling pulls one line every batch, not every item;</item>
/// <item>a full channel takes writes again only once <see cref="ResumeRoom"/> slots are free, so the writer never
/// writes into the lines the reader is reading.</item>
/// </list>
/// </summary>
internal sealed class SpscChannel
{
    /// <summary>Items a side moves before it publishes its index: a NAPI-like batch (arbitrary).</summary>
    private const int PublishEvery = 16;

    /// <summary>Free slots a full channel waits for before it takes writes again (a quarter of 1024).</summary>
    private const int ResumeRoom = 256;

    private readonly nint[] _items;
    private readonly long _mask;
    private readonly Side _writer = new();
    private readonly Side _reader = new();

    public SpscChannel(int capacity)
    {
        if (capacity < 2 * ResumeRoom || (capacity & (capacity - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"A power of two of at least {2 * ResumeRoom}.");
        _items = new nint[capacity];
        _mask = capacity - 1;
    }

    /// <summary>Whether the reader has taken everything the writer published (both indexes as published).</summary>
    public bool IsEmpty => Volatile.Read(ref _reader.Published) == Volatile.Read(ref _writer.Published);

    /// <summary>Writer only: appends <paramref name="item"/>; false when the channel is full.</summary>
    public bool TryWrite(nint item)
    {
        long tail = _writer.Next;
        if (tail - _writer.OtherSeen >= _items.Length)
        {
            // Volatile (acquire): the reader publishes its index after it has read the slots below it.
            _writer.OtherSeen = Volatile.Read(ref _reader.Published);
            if (tail - _writer.OtherSeen > _items.Length - ResumeRoom)
            {
                Flush();
                return false;
            }
        }
        _items[tail & _mask] = item;
        _writer.Next = tail + 1;
        if (tail + 1 - _writer.Published >= PublishEvery)
            Flush();
        return true;
    }

    /// <summary>Writer only: publishes what it has written.</summary>
    public void Flush() =>
        // Volatile (release): the slot writes happen before the reader sees the new index.
        Volatile.Write(ref _writer.Published, _writer.Next);

    /// <summary>Reader only: takes the oldest item; false when there is none published.</summary>
    public bool TryRead(out nint item)
    {
        long head = _reader.Next;
        if (head == _reader.OtherSeen)
        {
            // Out of items: publish what has been read, so that a waiting writer (and Drain) sees it.
            if (_reader.Published != head)
                // Volatile (release): the slots have been read before the writer may reuse them.
                Volatile.Write(ref _reader.Published, head);
            // Volatile (acquire): pairs with the writer's release.
            _reader.OtherSeen = Volatile.Read(ref _writer.Published);
            if (head == _reader.OtherSeen)
            {
                item = 0;
                return false;
            }
        }
        item = _items[head & _mask];
        _reader.Next = head + 1;
        if (head + 1 - _reader.Published >= PublishEvery)
            // Volatile (release): as above.
            Volatile.Write(ref _reader.Published, head + 1);
        return true;
    }

    /// <summary>
    /// One side's state. <see cref="Published"/>, which the other side polls, has a cache line to itself; the
    /// side's working state is on the next one, so writing it never disturbs the other side.
    /// </summary>
    private sealed class Side
    {
#pragma warning disable CS0169 // padding
        private long _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7;
#pragma warning restore CS0169
        public long Published;
#pragma warning disable CS0169
        private long _m0, _m1, _m2, _m3, _m4, _m5, _m6, _m7;
#pragma warning restore CS0169
        public long Next;
        public long OtherSeen;
#pragma warning disable CS0169
        private long _q0, _q1, _q2, _q3, _q4, _q5, _q6, _q7;
#pragma warning restore CS0169
    }
}
