namespace OR1.Native.Distributed;

/// <summary>
/// The collectives of <see cref="ICollectives"/> on fp32 tensors of one backend, wherever they live: host-visible tensors
/// (the Cpu backend, the emulator) are reduced in place through the world's host collectives; device tensors go through
/// NCCL on the backend's stream when a communicator is given, else they are staged through a host buffer (a copy down
/// and up per call: correct on every backend, and the path a GPU takes without NCCL).
/// <para>Counts are Int64: a 7B model's flat gradient (7.6e9 elements) and a 32B model's slices on 8 ranks (4.1e9) are
/// longer than an Int32. NCCL takes them in one call (size_t counts). The world's host collectives take spans (Int32
/// lengths, and MPI's int counts), so a tensor longer than <see cref="HostCallElements"/> is moved in several calls of at
/// most that many elements, and device memory is staged through a host buffer of at most <see cref="StagingElements"/>
/// elements, never one .NET array of the whole. A sum (all-reduce, reduce) cuts its buffer into consecutive pieces. An
/// all-gather cannot: its output is rank-major (rank r's n elements at r x n), so the call for piece [at, at + c) of
/// every rank's input gathers into a buffer of WorldSize x c and each rank's c elements go to r x n + at of the output.
/// Whatever fits one call goes in one call, as it did before there were pieces: the gradients' buckets (16 MB by
/// default) and every flat buffer of up to 2^31 - 1 elements are summed and gathered by the same calls, so a 1.5B run's
/// bits are unchanged.</para>
/// <para>Every rank must cut the same way: the limits are process-wide settings, and before a collective that takes
/// several calls the ranks agree on its total size (one small all-reduce), so that sizes that differ between ranks are
/// a <see cref="CollectiveException"/> on every rank rather than one rank waiting in a call the others never make.</para>
/// </summary>
public sealed class TensorCollectives(IBackend backend, ICollectives world, NcclCollectives? nccl = null)
{
    /// <summary>
    /// The most elements one call of the world's host collectives moves in place (a span's length is an Int32). A setting
    /// of the process so that tests can shrink it (internal): then a small model's flat buffer takes many calls, as a 7B
    /// model's does at the real limit.
    /// </summary>
    internal static int HostCallElements { get; set; } = int.MaxValue;

    /// <summary>
    /// The most elements of the host buffer that stages device memory without NCCL (256 MB of fp32): what a call takes
    /// (the input's piece and, for an all-gather, every rank's piece of it). Above any bucket of the gradients' sum
    /// (<c>AdamWOptimizer.BucketElements</c> is 2^22), so a bucket is one call. Tests shrink it (internal).
    /// </summary>
    internal static int StagingElements { get; set; } = 1 << 26;

    private float[] _staging = [];

    /// <summary>How the tensors travel: "host (in place)", "nccl 2.x", or "staged through the host".</summary>
    public string Path { get; } = nccl is not null ? nccl.Description : HostVisible(backend) ? "host (in place)" : "staged through the host";

    private static bool HostVisible(IBackend backend)
    {
        using var probe = backend.Allocate(DType.Float32, new TensorShape(1), "probe");
        return probe.IsHostVisible;
    }

    /// <summary>buffer = the sum over the ranks (in place).</summary>
    public void AllReduceSum(Tensor buffer)
    {
        Check(buffer, nameof(buffer));
        if (world.WorldSize == 1) return;
        if (nccl is not null && !buffer.IsHostVisible)
        {
            nccl.AllReduceSum(buffer);
            return;
        }
        backend.Synchronize();
        long n = buffer.ElementCount;
        int limit = buffer.IsHostVisible ? HostCallElements : StagingElements;
        if (n > limit) AgreeOnTotal(n, "all-reduce");
        // One call when it fits (the view only when it does not: a bucket's sum allocates nothing here).
        for (long at = 0; at == 0 || at < n; at += limit)
        {
            var piece = n <= limit ? buffer : Piece(buffer, at, (int)Math.Min(limit, n - at));
            if (piece.IsHostVisible)
            {
                world.AllReduceSum(piece.AsSpan<float>());
                continue;
            }
            var host = Staging(piece.ElementCount);
            backend.Download<float>(piece, host);
            world.AllReduceSum(host);
            backend.Upload<float>(host, piece);
        }
    }

    /// <summary>On rank <paramref name="root"/>, output = the sum over the ranks of input; the others pass a null output.</summary>
    public void ReduceSum(Tensor input, Tensor? output, int root)
    {
        Check(input, nameof(input));
        if (output is not null) Check(output, nameof(output));
        long n = input.ElementCount;
        // The sizes whole, before any piece is cut (the world checks each call's pieces again).
        Collectives.CheckReduce(n, world.Rank == root || output is not null ? output?.ElementCount ?? 0 : null, root, world.WorldSize, world.Rank);
        if (nccl is not null && !input.IsHostVisible && output is not { IsHostVisible: true })
        {
            nccl.ReduceSum(input, output, root);
            return;
        }
        backend.Synchronize();
        bool inPlace = input.IsHostVisible && output is not { IsHostVisible: false };
        // Staged: the input's piece and the root's sum of it.
        int limit = inPlace ? HostCallElements : StagingElements / 2;
        if (n > limit) AgreeOnTotal(n, "reduce");
        for (long at = 0; at == 0 || at < n; at += limit)
        {
            int count = (int)Math.Min(limit, n - at);
            var from = n <= limit ? input : Piece(input, at, count);
            var to = output is null || n <= limit ? output : Piece(output, at, count);
            if (inPlace)
            {
                world.ReduceSum(from.AsSpan<float>(), to is null ? [] : to.AsSpan<float>(), root);
                continue;
            }
            var host = Staging(2L * count);
            Span<float> sent = host[..count], summed = host.Slice(count, to is null ? 0 : count);
            if (from.IsHostVisible) from.AsSpan<float>().CopyTo(sent);
            else backend.Download<float>(from, sent);
            world.ReduceSum(sent, summed, root);
            if (to is not null) backend.Upload<float>(summed, to);
        }
    }

    /// <summary>output (WorldSize x n elements) = every rank's input (n elements), in rank order.</summary>
    public void AllGather(Tensor input, Tensor output)
    {
        Check(input, nameof(input));
        Check(output, nameof(output));
        Collectives.CheckGather(input.ElementCount, output.ElementCount, world.WorldSize, world.Rank);
        if (nccl is not null && !input.IsHostVisible && !output.IsHostVisible)
        {
            nccl.AllGather(input, output);
            return;
        }
        backend.Synchronize();
        long n = input.ElementCount, total = output.ElementCount;
        int ranks = world.WorldSize;
        bool inPlace = input.IsHostVisible && output.IsHostVisible;
        if (inPlace && total <= HostCallElements)
        {
            world.AllGather(input.AsSpan<float>(), output.AsSpan<float>());
            return;
        }
        // In pieces of `chunk` elements per rank; the host buffer holds a piece of the input (when staged) and the
        // gathered pieces of every rank.
        int limit = inPlace ? HostCallElements : StagingElements;
        int chunk = (int)Math.Clamp(limit / (ranks + 1L), 1, Math.Max(1, n));
        if (total + n > limit) AgreeOnTotal(n, "all-gather");
        for (long at = 0; at == 0 || at < n; at += chunk)
        {
            int count = (int)Math.Min(chunk, n - at);
            var host = Staging((ranks + 1L) * count);
            Span<float> sent = host[..count], gathered = host.Slice(count, ranks * count);
            var from = n == count ? input : Piece(input, at, count);
            if (from.IsHostVisible) from.AsSpan<float>().CopyTo(sent);
            else backend.Download<float>(from, sent);
            world.AllGather(sent, gathered);
            if (count == n && !output.IsHostVisible)
            {
                // One piece: the gathered buffer is the output, in one copy up.
                backend.Upload<float>(gathered, output);
                continue;
            }
            for (int r = 0; r < ranks; r++)
            {
                var to = Piece(output, r * n + at, count);
                var values = gathered.Slice(r * count, count);
                if (to.IsHostVisible) values.CopyTo(to.AsSpan<float>());
                else backend.Upload<float>(values, to);
            }
        }
    }

    /// <summary>
    /// Before a collective of several calls: throws on every rank when the ranks' totals differ (a rank with fewer pieces
    /// would otherwise leave the others waiting in a call it never makes).
    /// </summary>
    private void AgreeOnTotal(long elements, string what)
    {
        Span<double> bounds = [elements, -elements];
        world.AllReduceMax(bounds);
        long most = (long)bounds[0], least = -(long)bounds[1];
        if (most != least)
            throw new CollectiveException($"rank {world.Rank}: {what} over tensors of different sizes: this rank has {elements:N0} elements, " +
                                          $"the ranks have between {least:N0} and {most:N0}; every rank must pass the same size");
    }

    /// <summary>Elements [at, at + count) of a tensor of any shape, as a 1-D view.</summary>
    private static Tensor Piece(Tensor t, long at, int count) => t.View(at, new TensorShape(count));

    private void Check(Tensor t, string argument)
    {
        if (!ReferenceEquals(t.Backend, backend)) throw new ArgumentException($"{t.Describe()} belongs to another backend than these collectives' ({backend.Kind})", argument);
        if (t.DType != DType.Float32) throw new ArgumentException($"{t.Describe()}: the collectives take Float32 tensors", argument);
    }

    private Span<float> Staging(long elements)
    {
        if (_staging.Length < elements) _staging = new float[checked((int)elements)];
        return _staging.AsSpan(0, (int)elements);
    }
}
