using System.Diagnostics;
using UnmanagedPool.Native;
using PacketProcessor.Drivers;
using PacketProcessor.Frames;
using PacketProcessor.Programs;

namespace PacketProcessor.Engine;

/// <summary>
/// The packet processor: one thread per RX queue (each the consumer of its own pool), plus one worker thread
/// standing in for the stack, which frees the packets programs pass. <see cref="Run"/> returns when the duration
/// is over or the token is cancelled, after every buffer went back to its pool.
/// </summary>
public sealed class Processor : IDisposable
{
    private readonly ProcessorOptions _options;
    private readonly QueueBase[] _queues;
    private volatile bool _stop;
    private long _workerAllocatedBytes;   // written by the worker before it stops, read after it is joined
    private readonly ManualResetEventSlim _started = new();
    private readonly UmemProvider? _umem;
    private readonly IDisposable? _xdpProgram;

    /// <summary>Opens the driver's queues.</summary>
    /// <exception cref="ArgumentException">Invalid options (the message says which).</exception>
    /// <exception cref="DriverException">The driver could not open (no interface, no privileges, ...).</exception>
    public Processor(ProcessorOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Validate() is { } error)
            throw new ArgumentException(error, nameof(options));
        _options = options;
        if (options.Driver == DriverKind.AfPacket && options.Mtu is int mtu
            && LinuxNet.ReadMtu(options.Interface!) is int interfaceMtu && mtu > interfaceMtu)
            throw new DriverException(DriverException.Usage,
                $"--mtu {mtu} is above the MTU of {options.Interface} ({interfaceMtu}): raise it with `ip link set {options.Interface} mtu {mtu}`.");
        _queues = new QueueBase[options.Queues];
        var nics = new List<NicQueue>();
        try
        {
            FrameGenerator? generator = options.Driver == DriverKind.Synthetic
                ? new FrameGenerator(options.Mix, malformedPerMille: options.MalformedPerMille) : null;
            int fanoutGroup = Environment.ProcessId & 0xffff;
            AfXdpNic? firstXdp = null;
            if (options.Driver == DriverKind.AfXdp)
                _umem = new UmemProvider(Math.Min(UmemBytesPerQueue * options.Queues, MaxUmemBytes));
            for (int i = 0; i < options.Queues; i++)
            {
                NicQueue nic;
                if (generator != null)
                {
                    nic = new SyntheticNic(generator, i);
                }
                else if (_umem != null)
                {
                    var x = AfXdpNic.Open(options.Interface!, i, _umem, firstXdp, options.XdpMode, options.XdpRingSize);
                    firstXdp ??= x;
                    nic = x;
                }
                else
                {
                    nic = AfPacketNic.Open(options.Interface!, options.Queues, fanoutGroup);
                }
                nics.Add(nic);
                _queues[i] = options.Pool == BufferPoolKind.PagePool ? Create<PagePoolBuffers>(i, nic) : Create<ArrayPoolBuffers>(i, nic);
            }
            if (_umem != null)
            {
                var xdp = nics.Cast<AfXdpNic>().ToList();
                _xdpProgram = AfXdpNic.AttachProgram(options.Interface!, options.XdpMode, xdp);
                DriverNote = xdp[0].IsZeroCopy
                    ? $"afxdp: zero-copy mode on {options.Interface}."
                    : $"afxdp: copy mode on {options.Interface}" + (options.XdpMode == AfXdpMode.Auto ? " (its driver has no AF_XDP zero-copy)." : ".");
            }
        }
        catch
        {
            foreach (NicQueue nic in nics)
                nic.Dispose();
            _umem?.Dispose();
            throw;
        }
    }

    /// <summary>UMEM bytes per afxdp queue (arbitrary: room for the rings, the pool's caches and the backlogs).</summary>
    private const long UmemBytesPerQueue = 64L << 20;

    /// <summary>The largest UMEM a <see cref="UmemProvider"/> maps.</summary>
    private const long MaxUmemBytes = 1L << 30;

    /// <summary>A line about how the driver runs (the afxdp mode the kernel chose), or null.</summary>
    public string? DriverNote { get; }

    private QueueBase Create<TOps>(int i, NicQueue nic) where TOps : struct, IBufferOps
    {
        return _options.Program switch
        {
            ProgramKind.Drop => Queue(new DropProgram()),
            ProgramKind.L2Fwd => Queue(new L2FwdProgram()),
            ProgramKind.UdpFilter => Queue(new UdpFilterProgram(_options.Port)),
            ProgramKind.Redirect => Queue(new RedirectProgram()),
            ProgramKind.Count => Queue(new CountProgram(_options.Port)),
            _ => throw new ArgumentOutOfRangeException(nameof(_options.Program), _options.Program, "Unknown program."),
        };

        // The queue for one program type: its settings are the same whatever the program.
        RxQueue<TOps, TProgram> Queue<TProgram>(TProgram program) where TProgram : struct, IXdpProgram =>
            new(i, _options.Queues, _options.RingSize, nic, program)
            {
                RedirectAsXdpFrames = _options.XdpFrames,
                RxPiecesPerPage = _options.RxBuffer.PiecesPerPage(),
                DmaMap = _options.DmaMap,
                Mtu = _options.Mtu ?? 0,
                BusyPollMicroseconds = _options.BusyPollMicroseconds,
            };
    }

    /// <summary>Set once every queue has posted its ring and polls.</summary>
    public WaitHandle Started => _started.WaitHandle;

    /// <summary>Frames the programs matched so far (readable while running).</summary>
    public long Matched => _queues.Sum(q => q.Matched);

    /// <summary>Frames received so far (readable while running).</summary>
    public long RxPackets => _queues.Sum(q => Volatile.Read(ref q.Counters.RxPackets));

    /// <summary>
    /// Runs until the duration is over or <paramref name="cancellationToken"/> is cancelled, calling
    /// <paramref name="progress"/> about once a second from the calling thread.
    /// </summary>
    public ProcessorResult Run(CancellationToken cancellationToken = default, Action<ProgressSample>? progress = null)
    {
        int n = _queues.Length;
        var phases = new Barrier(n + 1);
        var ready = new CountdownEvent(n);
        var errors = new List<Exception>();
        Func<bool> stop = () => _stop;
        var threads = new Thread[n + 1];
        var gate = new StartGate();
        var workerReady = new CountdownEvent(1);
        for (int i = 0; i < n; i++)
        {
            QueueBase q = _queues[i];
            threads[i] = new Thread(() =>
            {
                try
                {
                    q.Run(_queues, stop, phases, ready);
                }
                catch (Exception e)
                {
                    lock (errors)
                        errors.Add(e);
                    _stop = true;
                    if (!ready.IsSet)
                        ready.Signal();
                    phases.RemoveParticipant();
                }
            })
            { Name = $"rx{i}", IsBackground = true };
        }
        threads[n] = new Thread(() => Worker(phases, ready, workerReady, gate)) { Name = "stack", IsBackground = true };
        foreach (QueueBase q in _queues)
            q.Gate = gate;
        foreach (Thread t in threads)
            t.Start();
        ready.Wait();
        workerReady.Wait();
        // Before any thread's measured window: a blocking collection hands back the unused part of every thread's
        // allocation context (and accounts for it). A thread that then allocates nothing keeps an empty context,
        // which a background collection during the run cannot count as allocated bytes of that thread.
        GC.Collect(0, GCCollectionMode.Forced, blocking: true);
        gate.Open();
        _started.Set();

        int gen0Before = GC.CollectionCount(0);
        var clock = Stopwatch.StartNew();
        TimeSpan duration = _options.Duration;
        long lastPackets = 0, lastBytes = 0;
        TimeSpan lastTime = TimeSpan.Zero;
        TimeSpan nextTick = TimeSpan.FromSeconds(1);
        while (!_stop && !cancellationToken.IsCancellationRequested && clock.Elapsed < duration)
        {
            TimeSpan wait = Min(nextTick, duration) - clock.Elapsed;
            if (wait > TimeSpan.Zero)
                cancellationToken.WaitHandle.WaitOne(wait);
            TimeSpan now = clock.Elapsed;
            if (now >= nextTick && now < duration && !cancellationToken.IsCancellationRequested)
            {
                long packets = 0, bytes = 0, drops = 0, inflight = 0, matched = 0;
                // Drops first, then rx: a queue counts a poll's frames as received before it counts any of their drops
                // (and a redirected frame's drops on another queue come after its rx on the first), so drops <= rx.
                foreach (QueueBase q in _queues)
                {
                    drops += q.Counters.ReadAllDrops();
                    inflight += q.InFlight;
                    matched += q.Matched;
                }
                foreach (QueueBase q in _queues)
                {
                    // Acquire: not moved before the drop reads above (see ReadAllDrops).
                    packets += Volatile.Read(ref q.Counters.RxPackets);
                    bytes += Volatile.Read(ref q.Counters.RxBytes);
                }
                double dt = (now - lastTime).TotalSeconds;
                progress?.Invoke(new ProgressSample(now, (packets - lastPackets) / dt / 1e6, (bytes - lastBytes) * 8 / dt / 1e9, packets, drops, inflight, matched));
                lastPackets = packets;
                lastBytes = bytes;
                lastTime = now;
                nextTick += TimeSpan.FromSeconds(1);
            }
        }
        _stop = true;
        TimeSpan elapsed = clock.Elapsed;
        int gen0 = GC.CollectionCount(0) - gen0Before;
        foreach (Thread t in threads)
            t.Join();
        if (errors.Count > 0)
            throw new AggregateException("A queue thread failed.", errors);
        // The packet path's threads, each measured by itself over its running phase: exact, and free of what this
        // thread allocates to print progress.
        long allocated = _workerAllocatedBytes;
        foreach (QueueBase q in _queues)
            allocated += q.AllocatedBytes;

        var results = new QueueResult[n];
        for (int i = 0; i < n; i++)
        {
            QueueBase q = _queues[i];
            QueueCounters c = q.Counters;
            results[i] = new QueueResult
            {
                Index = i,
                RxPackets = c.RxPackets,
                RxBytes = c.RxBytes,
                Drop = c.Drop,
                Aborted = c.Aborted,
                Pass = c.Pass,
                Tx = c.Tx,
                Redirect = c.Redirect,
                RedirectTx = c.RedirectTx,
                RedirectErrors = c.RedirectErrors,
                PassBacklogDrops = c.PassBacklogDrops,
                TxErrors = c.TxErrors,
                RxNoBuffers = c.RxNoBuffers,
                RxPaused = c.RxPaused,
                RxPages = c.RxPages,
                Matched = q.Matched,
                // Read again now that every queue has stopped: a page another queue's AF_XDP socket was still
                // transmitting came back to this pool when that queue closed its socket.
                Pool = q.Pool?.GetStats() ?? q.FinalPoolStats,
                InFlight = q.InFlight,
                KernelDrops = q.Nic.KernelDrops,
                ArraysRented = q.ArraysRented,
                ArraysReturned = q.ArraysReturnedHere + q.ArraysReturnedElsewhere,
                AllocatedBytes = q.AllocatedBytes,
            };
        }
        return new ProcessorResult
        {
            Options = _options,
            Elapsed = elapsed,
            Interrupted = cancellationToken.IsCancellationRequested,
            AllocatedBytes = allocated,
            WorkerAllocatedBytes = _workerAllocatedBytes,
            Gen0Collections = gen0,
            Queues = results,
        };
    }

    /// <summary>Asks a running <see cref="Run"/> to stop (as the token does).</summary>
    public void Stop() => _stop = true;

    // Fully optimized from the first call, as RxQueue.Run: no on-stack replacement inside the measured window.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private void Worker(Barrier phases, CountdownEvent ready, CountdownEvent workerReady, StartGate gate)
    {
        int idle = 0;
        // Every queue has created its pool: this thread's first puts into them happen now, not while measured.
        ready.Wait();
        if (!_stop)
            foreach (QueueBase q in _queues)
                if (q.Pool is { } pool)
                    QueueBase.TouchPoolThreadState(pool);
        workerReady.Signal();
        gate.Wait();
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        while (!_stop)
        {
            int work = 0;
            foreach (QueueBase q in _queues)
                work += q.FreePassed(1024);
            if (work > 0)
            {
                idle = 0;
            }
            else if (++idle > 64)
            {
                // Nothing passed for a while (drop, l2fwd, redirect): stay off the CPU the queues poll on.
                Thread.Sleep(1);
            }
            else
            {
                Thread.Yield();
            }
        }
        _workerAllocatedBytes = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        phases.SignalAndWait();
        phases.SignalAndWait();
        // Every queue has stopped receiving and emptied its inboxes: free whatever is left in the backlogs.
        foreach (QueueBase q in _queues)
            while (q.FreePassed(int.MaxValue) > 0)
            {
            }
        phases.SignalAndWait();
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (QueueBase q in _queues)
            q?.Nic.Dispose();
        // The link goes with its file descriptor: nothing stays attached to the interface.
        _xdpProgram?.Dispose();
        _umem?.Dispose();
        _started.Dispose();
    }
}
