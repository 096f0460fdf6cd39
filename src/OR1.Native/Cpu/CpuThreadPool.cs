namespace OR1.Native.Cpu;

/// <summary>
/// A small fork-join pool for the Cpu backend's kernels. Ops on the sample model take microseconds, so
/// the fork cost matters: workers poll for 200 µs before sleeping, and the calling thread does a share of
/// the work. There is one level of parallelism only: a kernel called from inside a pool job runs inline
/// (two pools fighting over two cores tripled step times in the prototype, see docs/SAMPLE-NOTES.md).
/// Parts are claimed dynamically, but each part writes only its own outputs, so results do not depend
/// on which thread ran which part.
/// </summary>
internal sealed class CpuThreadPool : IDisposable
{
    [ThreadStatic] private static bool t_insideJob;

    private readonly Thread[] _workers;
    private readonly SemaphoreSlim _start;
    private readonly object _runLock = new();
    private Action<int>? _body;
    private int _parts;
    private int _nextPart;
    private int _activeWorkers;
    private Exception? _failure;
    private volatile bool _stopping;

    public CpuThreadPool(int threadCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threadCount, 1);
        ThreadCount = threadCount;
        _start = new SemaphoreSlim(0);
        _workers = new Thread[threadCount - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            _workers[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"or1-cpu-{i + 1}" };
            _workers[i].Start();
        }
    }

    /// <summary>Threads that run parts, the caller included.</summary>
    public int ThreadCount { get; }

    /// <summary>Runs body(part) for every part in [0, parts), in parallel, and returns when all are done.</summary>
    public void Run(int parts, Action<int> body)
    {
        if (parts <= 0) return;
        if (parts == 1 || _workers.Length == 0 || t_insideJob)
        {
            for (int p = 0; p < parts; p++) body(p);
            return;
        }
        lock (_runLock)
        {
            _body = body;
            _parts = parts;
            _failure = null;
            Volatile.Write(ref _nextPart, 0);
            int helpers = Math.Min(_workers.Length, parts - 1);
            Volatile.Write(ref _activeWorkers, helpers);
            _start.Release(helpers);
            t_insideJob = true;
            try { Drain(); }
            finally { t_insideJob = false; }
            var spin = new SpinWait();
            while (Volatile.Read(ref _activeWorkers) != 0) spin.SpinOnce(sleep1Threshold: -1);
            _body = null;
            if (_failure is { } failure) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
    }

    private void Drain()
    {
        var body = _body!;
        int parts = _parts;
        int part;
        while ((part = Interlocked.Increment(ref _nextPart) - 1) < parts)
        {
            try { body(part); }
            catch (Exception e) { Interlocked.CompareExchange(ref _failure, e, null); }
        }
    }

    /// <summary>
    /// How long an idle worker polls for the next job before it sleeps on the semaphore. A decode step of a small model
    /// is a few hundred ops microseconds apart; a worker that sleeps between them pays a wake-up (a futex and the
    /// scheduler) on every op, which the profile of the rollout engine put at 6 % of its time. Polling for 200 µs made the
    /// Groups case 1.6-2.9 % faster in interleaved A/B runs (50 µs: 2.6 %); a worker idle longer than that sleeps.
    /// </summary>
    private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 5_000; // 200 µs

    /// <summary>Takes a job's start signal if one arrives within <see cref="SpinTicks"/>, without sleeping.</summary>
    private bool TryStartSoon()
    {
        long deadline = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
        do
        {
            if (_start.CurrentCount > 0 && _start.Wait(0)) return true;
            Thread.SpinWait(16);
        } while (System.Diagnostics.Stopwatch.GetTimestamp() < deadline);
        return false;
    }

    private void WorkerLoop()
    {
        t_insideJob = true;
        while (true)
        {
            if (!TryStartSoon()) _start.Wait();
            if (_stopping) return;
            Drain();
            Interlocked.Decrement(ref _activeWorkers);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        // SemaphoreSlim.Release(0) throws: a one-thread pool has no workers to wake.
        if (_workers.Length > 0) _start.Release(_workers.Length);
        foreach (var worker in _workers) worker.Join();
        _start.Dispose();
    }
}
