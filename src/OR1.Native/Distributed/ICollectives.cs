namespace OR1.Native.Distributed;

/// <summary>
/// The collectives data-parallel training needs between ranks (processes started by an MPI launcher, one per GPU or CPU
/// socket): sums of float buffers (all-reduce, reduce-scatter), all-gather, sums of a few scalars, broadcast and barrier.
/// Every rank calls the same collectives in the same order with buffers of the same sizes; a size that differs between
/// ranks is a <see cref="CollectiveException"/> on every rank, never a hang or a silent misread.
/// <para>Implementations: <see cref="SingleProcess"/> (the world of one; every call is the identity) and
/// <see cref="MpiCollectives"/> (Open MPI through our binding of libmpi), chosen by <see cref="Collectives.FromLauncher"/>
/// from the launcher's environment: no flag is needed.</para>
/// </summary>
public interface ICollectives : IDisposable
{
    /// <summary>This process's rank in [0, <see cref="WorldSize"/>).</summary>
    int Rank { get; }

    /// <summary>The number of ranks (1 for a single process).</summary>
    int WorldSize { get; }

    /// <summary>What carries the collectives: "single process", "mpi (Open MPI 4.1.4)", ...</summary>
    string Description { get; }

    /// <summary>buffer = the element-wise sum of every rank's buffer (in place).</summary>
    void AllReduceSum(Span<float> buffer);

    /// <summary>values = the element-wise sum of every rank's values (in place): counts, losses, metrics.</summary>
    void AllReduceSum(Span<double> values);

    /// <summary>values = the element-wise maximum over the ranks (in place).</summary>
    void AllReduceMax(Span<double> values);

    /// <summary>
    /// The element-wise sum over the ranks of <paramref name="input"/> (WorldSize x n elements), of which this rank receives
    /// its slice [Rank x n, (Rank + 1) x n) in <paramref name="output"/> (n elements).
    /// </summary>
    void ReduceScatterSum(ReadOnlySpan<float> input, Span<float> output);

    /// <summary>
    /// On rank <paramref name="root"/>, output = the element-wise sum over the ranks of input (the same size); the other
    /// ranks pass an empty output. What the sharded optimizer's buckets take: each bucket lies in one rank's slice.
    /// </summary>
    void ReduceSum(ReadOnlySpan<float> input, Span<float> output, int root);

    /// <summary>output (WorldSize x n elements) = every rank's <paramref name="input"/> (n elements), in rank order.</summary>
    void AllGather(ReadOnlySpan<float> input, Span<float> output);

    /// <summary>Every rank's buffer becomes rank <paramref name="root"/>'s.</summary>
    void Broadcast(Span<byte> buffer, int root);

    /// <summary>
    /// Whether the collectives may be called from another thread than the one that started them, one thread at a time
    /// (MPI_THREAD_SERIALIZED or more): what lets the gradients be reduced by a thread of their own during the backward.
    /// </summary>
    bool AnyThread { get; }

    /// <summary>Returns once every rank has called it.</summary>
    void Barrier();

    /// <summary>
    /// Ends every rank of the world with <paramref name="code"/> (MPI_Abort): what a rank that cannot go on calls, so that
    /// the others, waiting in a collective for it, stop too instead of hanging. Does not return.
    /// </summary>
    void Abort(int code);
}

/// <summary>A collective that cannot proceed: sizes that differ between ranks, a failed call; the message names the rank.</summary>
public sealed class CollectiveException(string message) : Exception(message);
