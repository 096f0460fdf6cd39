namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// The bound on programs running at once: every sandbox run takes a slot for its whole life. Callers on
/// any number of threads queue in FIFO-ish order; a waiting caller can be cancelled.
/// </summary>
public sealed class ProgramPool
{
    private readonly SemaphoreSlim _slots;
    private int _running;
    private int _peak;

    /// <summary>A pool of <paramref name="size"/> slots.</summary>
    public ProgramPool(int size)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        Size = size;
        _slots = new SemaphoreSlim(size, size);
    }

    /// <summary>Slots.</summary>
    public int Size { get; }

    /// <summary>The most programs seen running at once (for tests and metrics).</summary>
    public int Peak => Volatile.Read(ref _peak);

    /// <summary>Runs <paramref name="work"/> in a slot.</summary>
    /// <exception cref="OperationCanceledException">cancelled while waiting for a slot.</exception>
    public T Run<T>(Func<T> work, CancellationToken cancellation)
    {
        _slots.Wait(cancellation);
        try
        {
            int now = Interlocked.Increment(ref _running);
            int peak;
            while (now > (peak = Volatile.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, now, peak) != peak)
            {
            }
            return work();
        }
        finally
        {
            Interlocked.Decrement(ref _running);
            _slots.Release();
        }
    }
}
