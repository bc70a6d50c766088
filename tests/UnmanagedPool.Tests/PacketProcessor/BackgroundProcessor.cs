using PacketProcessor.Engine;

namespace UnmanagedPool.Tests.PacketProcessor;

/// <summary>A <see cref="Processor"/> running on a thread of its own while a test sends it traffic.</summary>
internal sealed class BackgroundProcessor
{
    private readonly Processor _processor;
    private readonly Thread _thread;
    private ProcessorResult? _result;
    private Exception? _failure;

    private BackgroundProcessor(Processor processor)
    {
        _processor = processor;
        _thread = new Thread(() =>
        {
            try
            {
                _result = processor.Run();
            }
            catch (Exception e)
            {
                _failure = e;
            }
        });
    }

    /// <summary>Starts <paramref name="processor"/> and waits until every queue polls.</summary>
    public static BackgroundProcessor Start(Processor processor)
    {
        var run = new BackgroundProcessor(processor);
        run._thread.Start();
        Assert.True(processor.Started.WaitOne(TimeSpan.FromSeconds(10)), "The processor did not start.");
        return run;
    }

    /// <summary>Stops the processor and waits for its thread.</summary>
    public void Stop()
    {
        _processor.Stop();
        Assert.True(_thread.Join(TimeSpan.FromSeconds(30)), "The processor did not stop.");
    }

    /// <summary>The run's result, once <see cref="Stop"/> returned: asserts that the run threw nothing.</summary>
    public ProcessorResult Result
    {
        get
        {
            Assert.Null(_failure);
            return Assert.IsType<ProcessorResult>(_result);
        }
    }
}
