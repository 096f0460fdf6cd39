using OR1.Native.Distributed;

namespace OR1.Tests.Distributed;

/// <summary>
/// A world of N ranks in one process, one thread each (<see cref="Run"/>): every collective exchanges the ranks' buffers
/// through shared memory between two barriers and computes the answer in rank order (a sum is ((r0 + r1) + r2) ...,
/// whatever the pieces), so a result depends only on the values, not on how a caller cut its calls. Buffers whose sizes
/// differ between ranks throw a <see cref="CollectiveException"/> on every rank, as <see cref="MpiCollectives"/> does.
/// Records every float collective's length. For in-process tests of what several ranks do with long buffers.
/// </summary>
internal sealed class ThreadWorld
{
    private readonly Barrier _barrier;
    private readonly object?[] _posted;
    private readonly List<int>[] _lengths;

    private ThreadWorld(int size)
    {
        _barrier = new Barrier(size);
        _posted = new object?[size];
        _lengths = Enumerable.Range(0, size).Select(_ => new List<int>()).ToArray();
    }

    /// <summary>Runs <paramref name="body"/> on <paramref name="size"/> threads, one rank each; rethrows the first rank's failure.</summary>
    public static IReadOnlyList<int>[] Run(int size, Action<ICollectives> body)
    {
        var world = new ThreadWorld(size);
        var failures = new Exception?[size];
        var threads = Enumerable.Range(0, size).Select(r => new Thread(() =>
        {
            try
            {
                body(new Member(world, r));
            }
            catch (Exception e)
            {
                failures[r] = e;
            }
        }, maxStackSize: 16 << 20) { IsBackground = true, Name = $"rank {r}" }).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.That(t.Join(TimeSpan.FromMinutes(3)), Is.True, $"{t.Name} finished");
        if (failures.Any(f => f is not null)) throw new AggregateException(failures.Where(f => f is not null)!);
        return world._lengths;
    }

    /// <summary>Every rank's posted array, in rank order (every rank must call it together).</summary>
    private T[][] Exchange<T>(int rank, T[] mine, string what)
    {
        _posted[rank] = mine;
        Wait();
        var all = _posted.Select(p => (T[])p!).ToArray();
        Wait();
        int most = all.Max(a => a.Length), least = all.Min(a => a.Length);
        if (most != least)
            throw new CollectiveException($"rank {rank}: {what} over buffers of different sizes: this rank has {mine.Length:N0} elements, " +
                                          $"the ranks have between {least:N0} and {most:N0}; every rank must pass the same size");
        return all;
    }

    private void Wait()
    {
        if (!_barrier.SignalAndWait(TimeSpan.FromSeconds(60))) throw new TimeoutException("a rank did not reach the collective (the ranks' calls differ)");
    }

    private static float[] Sum(float[][] all)
    {
        var sum = (float[])all[0].Clone();
        for (int r = 1; r < all.Length; r++)
            for (int i = 0; i < sum.Length; i++) sum[i] += all[r][i];
        return sum;
    }

    private sealed class Member(ThreadWorld world, int rank) : ICollectives
    {
        public int Rank => rank;
        public int WorldSize => world._posted.Length;
        public string Description => "threads (in-process test world)";
        public bool AnyThread => true;

        private void Record(int length) => world._lengths[rank].Add(length);

        public void AllReduceSum(Span<float> buffer)
        {
            Record(buffer.Length);
            Sum(world.Exchange(rank, buffer.ToArray(), "all-reduce")).CopyTo(buffer);
        }

        public void AllReduceSum(Span<double> values)
        {
            var all = world.Exchange(rank, values.ToArray(), "all-reduce of scalars");
            for (int i = 0; i < values.Length; i++) values[i] = all.Sum(a => a[i]);
        }

        public void AllReduceMax(Span<double> values)
        {
            var all = world.Exchange(rank, values.ToArray(), "all-reduce (max) of scalars");
            for (int i = 0; i < values.Length; i++) values[i] = all.Max(a => a[i]);
        }

        public void ReduceScatterSum(ReadOnlySpan<float> input, Span<float> output)
        {
            Record(output.Length);
            Sum(world.Exchange(rank, input.ToArray(), "reduce-scatter")).AsSpan(rank * output.Length, output.Length).CopyTo(output);
        }

        public void ReduceSum(ReadOnlySpan<float> input, Span<float> output, int root)
        {
            Record(input.Length);
            var sum = Sum(world.Exchange(rank, input.ToArray(), "reduce"));
            if (rank == root) sum.CopyTo(output);
            else Assert.That(output.Length, Is.Zero, "a rank that is not the root passes no output");
        }

        public void AllGather(ReadOnlySpan<float> input, Span<float> output)
        {
            Record(output.Length);
            var all = world.Exchange(rank, input.ToArray(), "all-gather");
            Assert.That(output.Length, Is.EqualTo(all.Length * input.Length), "all-gather's output: world size x the input");
            for (int r = 0; r < all.Length; r++) all[r].CopyTo(output[(r * input.Length)..]);
        }

        public void Broadcast(Span<byte> buffer, int root) => world.Exchange(rank, buffer.ToArray(), "broadcast")[root].CopyTo(buffer);
        public void Barrier() => world.Wait();
        public void Abort(int code) => throw new InvalidOperationException($"abort({code})");
        public void Dispose() { }
    }
}
