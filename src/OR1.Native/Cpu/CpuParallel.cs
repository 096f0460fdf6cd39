namespace OR1.Native.Cpu;

/// <summary>
/// Range partitioning over the shared <see cref="CpuThreadPool"/>. Work is cut into at most
/// ThreadCount contiguous ranges of at least <c>grain</c> items; below one grain it runs inline, so tiny
/// ops pay no fork cost. Partitioning depends only on the count, the grain and the thread count, which
/// keeps reductions deterministic for a fixed thread count.
/// </summary>
internal static class CpuParallel
{
    private static CpuThreadPool s_pool = new(Environment.ProcessorCount);

    /// <summary>Threads the Cpu kernels use.</summary>
    public static int ThreadCount => s_pool.ThreadCount;

    /// <summary>Replaces the pool (used by the backend's thread-count option and by tests).</summary>
    public static void SetThreadCount(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        if (threads == s_pool.ThreadCount) return;
        var old = Interlocked.Exchange(ref s_pool, new CpuThreadPool(threads));
        old.Dispose();
    }

    /// <summary>Number of ranges <see cref="For"/> will use for <paramref name="count"/> items.</summary>
    public static int PartCount(int count, int grain)
    {
        if (count <= 0) return 0;
        long byGrain = (count + (long)Math.Max(1, grain) - 1) / Math.Max(1, grain);
        return (int)Math.Min(ThreadCount, byGrain);
    }

    /// <summary>Calls body(start, end) on disjoint ranges covering [0, count).</summary>
    public static void For(int count, int grain, Action<int, int> body)
    {
        int parts = PartCount(count, grain);
        if (parts == 0) return;
        if (parts == 1)
        {
            body(0, count);
            return;
        }
        s_pool.Run(parts, p => body(RangeStart(count, parts, p), RangeStart(count, parts, p + 1)));
    }

    /// <summary>Calls body(part, start, end) for each of <paramref name="parts"/> ranges of [0, count).</summary>
    public static void ForParts(int count, int parts, Action<int, int, int> body)
    {
        if (parts <= 1)
        {
            body(0, 0, count);
            return;
        }
        s_pool.Run(parts, p => body(p, RangeStart(count, parts, p), RangeStart(count, parts, p + 1)));
    }

    /// <summary>Runs body(index) for index in [0, count), each index as its own work item (load-balanced).</summary>
    public static void ForEach(int count, Action<int> body) => s_pool.Run(count, body);

    private static int RangeStart(int count, int parts, int part) => (int)((long)count * part / parts);
}
