using System.Runtime.ExceptionServices;
using OR1.Native.Cuda;

namespace OR1.Native.Distributed;

/// <summary>When a <see cref="GradientReduction"/> sums its buckets.</summary>
public enum ReductionTiming
{
    /// <summary>All of them after the backward, on the calling thread (or the backend's stream).</summary>
    AfterBackward,

    /// <summary>Each as soon as the backward has finished it, by a thread of its own (host memory, MPI).</summary>
    OverlappedOnThread,

    /// <summary>Each as soon as the backward has finished it, by NCCL on the Cuda backend's side stream.</summary>
    OverlappedOnSideStream,
}

/// <summary>
/// The sum over the ranks of a flat gradient buffer, bucket by bucket (<see cref="GradientBuckets.Plan"/>): all-reduced
/// in place, or, sharded, each bucket reduced into its owner's slice (the constructor's <c>shard</c>, this rank's slice of the
/// flat layout). Overlapped, the backward reports how far its gradients are final (<see cref="ReadyFrom"/>) and every
/// bucket inside that part starts at once, while the backward goes on with the layers below: NCCL's collectives on the
/// Cuda backend's side stream, ordered after the ops that wrote the bucket by an event (nothing waits for the host), or,
/// in host memory under a world whose collectives any thread may call, a thread of its own. <see cref="Finish"/> starts
/// what is left and orders the backend's next ops after all of it. Without overlap (or where neither holds: device memory
/// without NCCL, staged through the host) the buckets are summed by <see cref="Finish"/>. Either way the same
/// collectives run on the same buckets in the same order, so the sums are the same bits.
/// <para>Each step: the backward of the last micro-batch calls <see cref="ReadyFrom"/> (earlier micro-batches still add
/// to the buffer, so they must not), then <see cref="Finish"/>; <see cref="Reset"/> before the buffer is written again.</para>
/// </summary>
public sealed class GradientReduction : IDisposable
{
    private readonly TensorCollectives _collectives;
    private readonly NcclCollectives? _nccl;
    private readonly CudaBackend? _cuda;
    private readonly GradientBucket[] _plan;
    private readonly Tensor[] _inputs;
    private readonly Tensor?[] _outputs;
    // Buckets started so far this step (a prefix of the plan).
    private int _started;

    // The reduction thread's queue: buckets [_done, _queued) wait for it; it stops when _stopping.
    private readonly Thread? _thread;
    private readonly object _gate = new();
    private int _queued, _done;
    private bool _stopping;
    private ExceptionDispatchInfo? _failure;

    /// <param name="backend">The backend the gradients live on.</param>
    /// <param name="world">The ranks.</param>
    /// <param name="collectives">The tensor collectives over <paramref name="world"/> (the path for <see cref="ReductionTiming.AfterBackward"/>).</param>
    /// <param name="flat">The flat gradient buffer the plan cuts (fp32).</param>
    /// <param name="shard">Sharded: this rank's slice of the sum (flat length / ranks elements of fp32); null: all-reduced in place.</param>
    /// <param name="plan">The buckets, in the order the backward finishes them (<see cref="GradientBuckets.Plan"/>).</param>
    /// <param name="nccl">The GPU communicator, for gradients in device memory (else they are staged through the host after the backward).</param>
    /// <param name="overlap">Start the buckets during the backward: null (default) where the sum runs on the device beside
    /// the ops (NCCL on the side stream), but not in host memory, where a thread of its own would compete with the
    /// backend's threads for the rank's cores (measured slower on a machine whose ranks have no core to spare:
    /// bench/README.md); true also in host memory (ranks with cores to spare, transports that mostly wait); false never.</param>
    /// <exception cref="ArgumentException">A plan that does not cover the buffer, owners that do not match the sharding, or a slice of the wrong size.</exception>
    public GradientReduction(IBackend backend, ICollectives world, TensorCollectives collectives, Tensor flat, Tensor? shard, GradientBucket[] plan,
        NcclCollectives? nccl = null, bool? overlap = null)
    {
        _collectives = collectives;
        _plan = plan;
        long slice = flat.ElementCount / world.WorldSize;
        if (shard is not null && (flat.ElementCount % world.WorldSize != 0 || shard.ElementCount != slice))
            throw new ArgumentException($"{shard.Describe()}: this rank's slice of a flat gradient of {flat.ElementCount:N0} elements over {world.WorldSize} ranks has {slice:N0}", nameof(shard));
        long covered = flat.ElementCount;
        foreach (var bucket in plan)
        {
            bool ownerFits = shard is null ? bucket.Owner == -1 : (uint)bucket.Owner < (uint)world.WorldSize
                && bucket.Start >= slice * bucket.Owner && bucket.End <= slice * (bucket.Owner + 1);
            if (bucket.End != covered || bucket.Length < 1 || !ownerFits)
                throw new ArgumentException($"bucket [{bucket.Start:N0}, {bucket.End:N0}) of owner {bucket.Owner}: the plan must cover the flat gradient of " +
                                            $"{flat.ElementCount:N0} elements from its end, {(shard is null ? "all-reduced (owner -1)" : "each bucket inside its owner's slice")}", nameof(plan));
            covered = bucket.Start;
        }
        if (covered != 0) throw new ArgumentException($"the plan leaves elements [0, {covered:N0}) of the flat gradient out", nameof(plan));
        _inputs = plan.Select(b => flat.View(b.Start, new TensorShape(b.Length))).ToArray();
        _outputs = plan.Select(b => shard is not null && b.Owner == world.Rank ? shard.View(b.Start - slice * b.Owner, new TensorShape(b.Length)) : null).ToArray();

        bool onDevice = nccl is not null && !flat.IsHostVisible && shard is not { IsHostVisible: true };
        bool onHost = flat.IsHostVisible && shard is not { IsHostVisible: false };
        Timing = overlap == false ? ReductionTiming.AfterBackward
            : onDevice && backend is CudaBackend ? ReductionTiming.OverlappedOnSideStream
            : overlap == true && onHost && world.AnyThread ? ReductionTiming.OverlappedOnThread
            : ReductionTiming.AfterBackward;
        if (Timing == ReductionTiming.OverlappedOnSideStream)
        {
            _nccl = nccl;
            _cuda = (CudaBackend)backend;
        }
        if (Timing == ReductionTiming.OverlappedOnThread)
        {
            _thread = new Thread(Reduce) { IsBackground = true, Name = "or1 gradient reduction" };
            _thread.Start();
        }
    }

    /// <summary>When the buckets are summed.</summary>
    public ReductionTiming Timing { get; }

    /// <summary>How the buckets are summed, in words (for the start-up line).</summary>
    public string Description => $"{_plan.Length} bucket{(_plan.Length == 1 ? "" : "s")}, " + Timing switch
    {
        ReductionTiming.OverlappedOnSideStream => "overlapped with the backward on a side stream",
        ReductionTiming.OverlappedOnThread => "overlapped with the backward by a thread of their own",
        _ => "after the backward",
    };

    /// <summary>
    /// The backward's report: every gradient from flat element <paramref name="offset"/> to the end is final for this
    /// step (queued, on a device backend). Starts each bucket that lies there and has not started; a no-op without
    /// overlap. Reports come with decreasing offsets; the last, after the embedding, is 0.
    /// </summary>
    public void ReadyFrom(long offset)
    {
        if (Timing == ReductionTiming.AfterBackward) return;
        int end = _started;
        while (end < _plan.Length && _plan[end].Start >= offset) end++;
        if (end == _started) return;
        if (Timing == ReductionTiming.OverlappedOnSideStream)
        {
            _cuda!.SideWaitsForMain();
            for (int i = _started; i < end; i++) OnSideStream(i);
        }
        else
        {
            lock (_gate)
            {
                _queued = end;
                Monitor.PulseAll(_gate);
            }
        }
        _started = end;
    }

    /// <summary>
    /// Sums every bucket not started yet and makes the sums visible: the backend's next ops come after all of them (on the
    /// device, queued; on the host, done). Rethrows what a bucket's collective threw on the reduction thread.
    /// </summary>
    public void Finish()
    {
        switch (Timing)
        {
            case ReductionTiming.AfterBackward:
                for (int i = 0; i < _plan.Length; i++) Sum(i);
                break;
            case ReductionTiming.OverlappedOnSideStream:
                ReadyFrom(0);
                _cuda!.MainWaitsForSide();
                break;
            case ReductionTiming.OverlappedOnThread:
                ReadyFrom(0);
                WaitForThread()?.Throw();
                break;
        }
        _started = 0;
    }

    /// <summary>
    /// Before the buffer is written again (the next step's zeroing): waits for buckets a step left running without
    /// <see cref="Finish"/> (it failed midway) and forgets them.
    /// </summary>
    public void Reset()
    {
        if (_started == 0) return;
        if (Timing == ReductionTiming.OverlappedOnSideStream) _cuda!.MainWaitsForSide();
        if (Timing == ReductionTiming.OverlappedOnThread) WaitForThread();
        _started = 0;
    }

    /// <summary>Bucket <paramref name="i"/>'s collective, on the calling thread (the step's, or the reduction thread).</summary>
    private void Sum(int i)
    {
        if (_plan[i].Owner < 0) _collectives.AllReduceSum(_inputs[i]);
        else _collectives.ReduceSum(_inputs[i], _outputs[i], _plan[i].Owner);
    }

    private void OnSideStream(int i)
    {
        if (_plan[i].Owner < 0) _nccl!.AllReduceSum(_inputs[i], _cuda!.SideStream);
        else _nccl!.ReduceSum(_inputs[i], _outputs[i], _plan[i].Owner, _cuda!.SideStream);
    }

    // The reduction thread (host memory: the collectives run in place on the buffer's own memory).
    private void Reduce()
    {
        while (true)
        {
            int i;
            bool failed;
            lock (_gate)
            {
                while (_done == _queued && !_stopping) Monitor.Wait(_gate);
                if (_done == _queued) return;
                i = _done;
                failed = _failure is not null;
            }
            // After a failure the rest of the step's buckets are skipped; the step rethrows it.
            if (!failed)
            {
                try
                {
                    Sum(i);
                }
                catch (Exception e)
                {
                    lock (_gate) _failure = ExceptionDispatchInfo.Capture(e);
                }
            }
            lock (_gate)
            {
                _done++;
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>Waits until the thread has taken every queued bucket; returns (and clears) its failure, if any.</summary>
    private ExceptionDispatchInfo? WaitForThread()
    {
        lock (_gate)
        {
            while (_done < _queued) Monitor.Wait(_gate);
            var failure = _failure;
            _failure = null;
            _queued = _done = 0;
            return failure;
        }
    }

    /// <summary>Waits for buckets still running (a step that failed midway), then stops the reduction thread.</summary>
    public void Dispose()
    {
        Reset();
        if (_thread is null) return;
        lock (_gate)
        {
            _stopping = true;
            Monitor.PulseAll(_gate);
        }
        _thread.Join();
    }
}
