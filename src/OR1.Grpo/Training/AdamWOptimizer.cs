using System.Runtime.InteropServices;
using OR1.Model;
using OR1.Native;
using OR1.Native.Distributed;

namespace OR1.Grpo.Training;

/// <summary>
/// The optimizer piece both trainers share: gradient buffers (parameter gradients accumulate over micro-batches),
/// AdamW moments, the step count for bias correction, and one step = global L2 norm, clip factor
/// min(1, max_norm / (norm + 1e-6)), AdamW with that factor on the gradient (torch's clip_grad_norm_ + AdamW).
/// Everything here is fp32. In mixed precision it updates the model's fp32 master and, in the same pass, refreshes
/// the bf16 working copy the forward reads (round to nearest even).
/// <para>Several ranks: the gradients are one flat buffer (<see cref="Qwen2Weights.Flat"/>, cut into equal slices, one
/// per rank). Unsharded, the step first all-reduces it in buckets, so every rank holds the whole batch's gradient and
/// takes the same update. Sharded (ZeRO-1), the step reduce-scatters it instead: each rank receives the sum of its
/// slice only, takes the clip's global norm from the slices' partial sums of squares (all-reduced), keeps and updates
/// the Adam moments of its slice only, and the ranks all-gather the updated slices of the weights, so every rank holds
/// the new weights and a rank's optimizer state is 1/N of the model's. The flat layout's gaps and tail are zero in
/// every rank's gradient, so they stay zero in the sums and in the moments.</para>
/// <para>The sum runs bucket by bucket (<see cref="GradientReduction"/>): the backward of a mini-batch's last
/// micro-batch reports how far its gradients are final (<see cref="GradientsFinalFrom"/>) and each bucket there starts
/// while the backward goes on (NCCL on the Cuda backend's side stream; a thread of its own over MPI), so that by the
/// end of the backward most of the sum is done; the step finishes it. Sharded, each bucket is reduced to the rank whose
/// slice holds it.</para>
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    /// <summary>Elements per collective of the step's sum (16 MB of fp32): bounds a staging copy, and the reduction of the
    /// last layers' buckets need not wait for the first layers' (it overlaps the backward of the layers below).</summary>
    public const int BucketElements = 1 << 22;

    /// <summary>
    /// The most elements of the host buffer a checkpoint's tensors travel through (256 MB of fp32), written or read a
    /// piece at a time (<see cref="StreamTensor"/>, <see cref="LoadMoments"/>): no copy of the whole state is made, on the
    /// host or the device (a 7B model's fp32 weights and moments are 91 GB, and its flat layout is longer than any .NET
    /// array). A setting of the process so that tests can shrink it (internal): a small model then takes many pieces.
    /// </summary>
    internal static int GatherElements { get; set; } = 1 << 26;

    private readonly IBackend _backend;
    private readonly TensorCollectives _collectives;
    // The sum of the ranks' gradients (null in a world of one, unsharded: nothing to sum), and its ReadyFrom as a delegate.
    private readonly GradientReduction? _reduction;
    private readonly Action<long>? _readyFrom;
    private readonly AdamWSlot[] _slots;
    private readonly Tensor[] _gradientTensors;
    // The fp32 parameters, whole (null when the master is sharded: then this rank holds _masterShard only).
    private readonly Tensor[]? _parameters;
    private readonly Tensor[]? _workingCopies;
    private readonly Tensor? _gradientShard, _shardFirst, _shardSecond, _masterShard;
    private readonly long[] _offsets;
    private readonly long[] _sizes;
    private readonly string[] _names;
    private readonly Dictionary<string, int> _index;
    private readonly int[][] _shapes;
    private readonly long _shardStart, _shardEnd;
    private float[]? _streamBuffer;

    /// <param name="model">The model to train.</param>
    /// <param name="world">The data-parallel ranks (one process when null).</param>
    /// <param name="shard">Shard the optimizer state over the ranks (ZeRO-1): the Adam moments, and in mixed precision the
    /// fp32 master too (the model's whole master is released once this rank has copied its slice). With one rank there is
    /// nothing to shard.</param>
    /// <param name="nccl">The GPU communicator of the world's ranks, for gradients in device memory (null: they are staged
    /// through the host).</param>
    /// <param name="shardAlone">Take the sharded path in a world of one too (one slice, the collectives copies): how one
    /// device tests that path, through NCCL on a GPU. Without it a world of one is never sharded.</param>
    /// <param name="overlapReduction">Start the gradients' sum during the backward (<see cref="GradientsFinalFrom"/>):
    /// null, where it runs on the device beside the ops (NCCL); true, in host memory too (a thread of its own); false,
    /// never (all of it in the step). The same sums either way (<see cref="GradientReduction"/>).</param>
    /// <param name="bucketElements">Elements per collective of that sum (<see cref="GradientBuckets.Plan"/>).</param>
    /// <exception cref="ArgumentException">A bf16 model without fp32 master weights (build or load it for training).</exception>
    public AdamWOptimizer(Qwen2Model model, ICollectives? world = null, bool shard = false, NcclCollectives? nccl = null, bool shardAlone = false,
        bool? overlapReduction = null, int bucketElements = BucketElements)
    {
        if (model.Parameters.DType != DType.Float32)
            throw new ArgumentException("a bf16 model needs fp32 master weights to train; create or load it with master weights", nameof(model));
        _backend = model.Backend;
        World = world ?? SingleProcess.Instance;
        _collectives = new TensorCollectives(_backend, World, nccl);
        IsSharded = shard && (World.WorldSize > 1 || shardAlone);
        var parameters = model.Parameters.Named;
        _names = parameters.Select(p => p.Name).ToArray();
        _index = _names.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i, StringComparer.Ordinal);
        _shapes = parameters.Select(p => p.Tensor.Shape.ToArray()).ToArray();
        _sizes = parameters.Select(p => p.Tensor.ElementCount).ToArray();
        // One flat layout whose length the world divides into slices of whole alignment units (the gradients' buffer).
        (_offsets, FlatLength) = Qwen2Weights.FlatLayout(model.Config, World.WorldSize * Qwen2Weights.FlatAlignment);
        // Before anything is allocated (the one limit left: Int32.MaxValue rows of the flat buffer, past 32B's layout).
        Qwen2Weights.RequireFlatLength(FlatLength, nameof(AdamWOptimizer), nameof(model));
        _workingCopies = model.Master is null ? null : model.Weights.Named.Select(p => p.Tensor).ToArray();
        long slice = FlatLength / World.WorldSize;
        if (IsSharded) (_shardStart, _shardEnd) = (slice * World.Rank, slice * (World.Rank + 1));
        if (IsSharded && model.Master is not null)
        {
            // This rank's slice of the fp32 master, then the whole master freed, before the gradients are allocated: the
            // whole master and the gradients (8 bytes a parameter) are never held at once.
            _masterShard = _backend.Allocate(DType.Float32, Qwen2Weights.FlatShape(slice), "master shard");
            _backend.Fill(_masterShard, 0f);
            var whole = parameters.Select(p => p.Tensor).ToArray();
            foreach (var piece in Pieces(_shardStart, _shardEnd)) _backend.Copy(PieceOf(whole, piece), ShardPiece(_masterShard, piece));
            _backend.Synchronize();
            model.ReleaseMaster();
            MasterBytes = slice * sizeof(float);
        }
        else _parameters = parameters.Select(p => p.Tensor).ToArray();
        Gradients = new Qwen2Weights(_backend, model.Config, DType.Float32, flatMultiple: World.WorldSize * Qwen2Weights.FlatAlignment);
        long before = _backend.AllocatedBytes;
        if (!IsSharded)
        {
            FirstMoment = new Qwen2Weights(_backend, model.Config);
            SecondMoment = new Qwen2Weights(_backend, model.Config);
            _slots = _parameters!.Select((p, i) => new AdamWSlot(p, Gradients.Named[i].Tensor, FirstMoment.Named[i].Tensor, SecondMoment.Named[i].Tensor,
                WorkingCopy: _workingCopies?[i])).ToArray();
            MomentBytes = _backend.AllocatedBytes - before;
        }
        else
        {
            _shardFirst = _backend.Allocate(DType.Float32, Qwen2Weights.FlatShape(slice), "exp_avg shard");
            _shardSecond = _backend.Allocate(DType.Float32, Qwen2Weights.FlatShape(slice), "exp_avg_sq shard");
            MomentBytes = _backend.AllocatedBytes - before;
            _backend.Fill(_shardFirst, 0f);
            _backend.Fill(_shardSecond, 0f);
            // The reduce-scatter's output: this rank's slice of the summed gradient (the AdamW slots read it).
            _gradientShard = _backend.Allocate(DType.Float32, Qwen2Weights.FlatShape(slice), "gradient shard");
            // One slot per parameter tensor that overlaps this rank's slice, over the overlap only.
            _slots = Pieces(_shardStart, _shardEnd).Select(piece => new AdamWSlot(
                _masterShard is null ? PieceOf(_parameters!, piece) : ShardPiece(_masterShard, piece), ShardPiece(_gradientShard, piece),
                ShardPiece(_shardFirst, piece), ShardPiece(_shardSecond, piece), WorkingCopy: _workingCopies is null ? null : PieceOf(_workingCopies, piece))).ToArray();
        }
        _gradientTensors = Gradients.Named.Select(n => n.Tensor).ToArray();
        if (World.WorldSize > 1 || IsSharded)
        {
            _reduction = new GradientReduction(_backend, World, _collectives, Gradients.Flat!, _gradientShard,
                GradientBuckets.Plan(FlatLength, World.WorldSize, IsSharded, bucketElements), nccl, overlapReduction);
            if (_reduction.Timing != ReductionTiming.AfterBackward) _readyFrom = _reduction.ReadyFrom;
        }
    }

    /// <summary>
    /// What the backward of a step's last micro-batch reports to (<see cref="Qwen2Model.Backward"/>'s
    /// <c>gradientsFinalFrom</c>): the flat offset from which its gradients are final, so that their sum starts during the
    /// backward. Null where nothing would start early (one process, or the sum runs after the backward). Earlier
    /// micro-batches must not report: they are not the last to add to the gradients.
    /// </summary>
    public Action<long>? GradientsFinalFrom => _readyFrom;

    /// <summary>How the gradients are summed over the ranks, in words ("none" in a world of one).</summary>
    public string ReductionDescription => _reduction?.Description ?? "none";

    /// <summary>When the gradients are summed (null in a world of one, unsharded).</summary>
    public ReductionTiming? GradientSumTiming => _reduction?.Timing;

    /// <summary>The ranks this optimizer steps with.</summary>
    public ICollectives World { get; }

    /// <summary>Whether this rank keeps only its slice's moments (ZeRO-1).</summary>
    public bool IsSharded { get; }

    /// <summary>Elements of the flat gradient layout (the parameters, their alignment gaps and the tail that makes equal slices).</summary>
    public long FlatLength { get; }

    /// <summary>Bytes of fp32 master weights this rank holds apart from the model (its slice, when the master is sharded; else 0).</summary>
    public long MasterBytes { get; }

    /// <summary>Whether this rank holds only its slice of the fp32 master (mixed precision, sharded).</summary>
    public bool IsMasterSharded => _masterShard is not null;

    /// <summary>Bytes of Adam moments this rank holds (counted from its allocations): the whole model's, or its slice's when sharded.</summary>
    public long MomentBytes { get; }

    /// <summary>
    /// dL/dθ, accumulated by the model's backward; <see cref="ZeroGradients"/> before each optimizer step's micro-batches.
    /// After a step of several ranks, the whole batch's sum when unsharded; sharded, only this rank's slice is summed
    /// (read the whole with <see cref="ReducedGradients"/>).
    /// </summary>
    public Qwen2Weights Gradients { get; }

    /// <summary>AdamW's exp_avg (null when sharded: each rank holds its slice).</summary>
    public Qwen2Weights? FirstMoment { get; }

    /// <summary>AdamW's exp_avg_sq (null when sharded).</summary>
    public Qwen2Weights? SecondMoment { get; }

    /// <summary>Optimizer steps taken (AdamW's bias-correction count; restored from checkpoints).</summary>
    public int Steps { get; set; }

    /// <summary>
    /// The factor the last step multiplied the gradient by (min(1, max_norm / norm)); the gradient buffers keep the
    /// unclipped values.
    /// </summary>
    public float LastClipScale { get; private set; } = 1f;

    /// <summary>How the gradients travel between ranks ("host (in place)", "nccl ...").</summary>
    public string CollectivesPath => _collectives.Path;

    /// <summary>Zeroes the gradients for the next step's micro-batches (after any of the last step's sum still running).</summary>
    public void ZeroGradients()
    {
        _reduction?.Reset();
        Gradients.Zero();
    }

    /// <summary>
    /// Sums the ranks' gradients (all-reduced, or reduced to their slices' ranks when sharded), clips by the global norm and applies AdamW.
    /// Every rank must call it together. Returns the norm before clipping.
    /// </summary>
    /// <exception cref="InvalidOperationException">The norm is not finite; nothing was changed (weights, moments,
    /// step count and <see cref="LastClipScale"/> are as before; every rank sees the same norm and refuses together).</exception>
    public float Step(AdamWOptions options, double maxGradNorm)
    {
        float norm;
        // The buckets the backward did not start, and the backend's next ops after every bucket's sum.
        _reduction?.Finish();
        if (IsSharded)
        {
            double partial = _backend.GlobalNorm([_gradientShard!]);
            Span<double> squares = [partial * partial];
            World.AllReduceSum(squares);
            norm = (float)Math.Sqrt(squares[0]);
        }
        else norm = _backend.GlobalNorm(_gradientTensors);
        if (!float.IsFinite(norm))
            throw new InvalidOperationException($"the gradient norm is {norm}; the update was not applied (lower the learning rate, check the data)");
        float scale = (float)Math.Min(1.0, maxGradNorm / (norm + 1e-6));
        _backend.AdamWStep(_slots, options, ++Steps, scale);
        LastClipScale = scale;
        if (IsSharded) GatherWeights();
        return norm;
    }

    /// <summary>
    /// Keep the summed gradient whole in <see cref="Gradients"/> after a sharded step (to save it): the step then
    /// all-gathers the gradient slices too, and gathers the weights through buffers of their own. Off by default, where
    /// a sharded step reuses the gradient buffers for the weights' gather.
    /// </summary>
    public bool KeepReducedGradients { get; set; }

    /// <summary>
    /// The summed gradient of the last step, whole: each parameter tensor's values, in <see cref="Qwen2Weights.Named"/>'s
    /// order (a .NET array per tensor: the whole flat layout of a 7B model is longer than any array).
    /// </summary>
    /// <exception cref="InvalidOperationException">A sharded optimizer without <see cref="KeepReducedGradients"/>.</exception>
    public IReadOnlyList<float[]> ReducedGradients() =>
        _names.Select((name, i) => Collect(_sizes[i], sink => StreamReducedGradient(name, 1f, sink))).ToArray();

    /// <summary>
    /// Gives parameter tensor <paramref name="name"/>'s summed gradient of the last step, times <paramref name="scale"/>
    /// (the clip's <see cref="LastClipScale"/> gives the gradient the update used), whole and row-major, to
    /// <paramref name="sink"/> in pieces of at most <see cref="GatherElements"/> through the checkpoints' host buffer: how
    /// <c>or1 step --save-grads</c> writes them without a host copy of the whole gradient. Local: no other rank takes part.
    /// </summary>
    /// <exception cref="InvalidOperationException">A sharded optimizer without <see cref="KeepReducedGradients"/>.</exception>
    /// <exception cref="ArgumentException">No parameter of that name.</exception>
    public void StreamReducedGradient(string name, float scale, Action<ReadOnlySpan<float>> sink)
    {
        if (IsSharded && !KeepReducedGradients)
            throw new InvalidOperationException("a sharded step keeps only this rank's slice of the summed gradient; set KeepReducedGradients before the step");
        DownloadInPieces(_gradientTensors[IndexOf(name)], scale, sink);
    }

    /// <summary>
    /// Every parameter tensor's moments, whole (name, shape, exp_avg, exp_avg_sq), in .NET arrays: for tests and tools of
    /// small models (a checkpoint streams them instead, <see cref="StreamTensor"/>). Sharded, every rank must call it together.
    /// </summary>
    public IReadOnlyList<(string Name, int[] Shape, float[] First, float[] Second)> GatherMoments() =>
        _names.Select((n, i) => (n, _shapes[i], Gather(OptimizerState.FirstMoment, i), Gather(OptimizerState.SecondMoment, i))).ToArray();

    /// <summary>
    /// The fp32 parameters, whole, by name, in .NET arrays (see <see cref="GatherMoments"/>); gathered from the ranks'
    /// slices when the master is sharded (every rank must call it together then).
    /// </summary>
    public Func<string, float[]> GatherParameters()
    {
        // Every tensor now, in the same order on every rank (a sharded master's pieces are collectives).
        var gathered = _names.Select((_, i) => Gather(OptimizerState.Parameters, i)).ToArray();
        return name => gathered[IndexOf(name)];
    }

    private float[] Gather(OptimizerState what, int tensor) => Collect(_sizes[tensor], sink => StreamTensor(what, _names[tensor], sink));

    /// <summary>The pieces a stream gives, in one array of <paramref name="size"/> elements.</summary>
    private static float[] Collect(long size, Action<Action<ReadOnlySpan<float>>> stream)
    {
        var values = new float[size];
        int at = 0;
        stream(piece =>
        {
            piece.CopyTo(values.AsSpan(at));
            at += piece.Length;
        });
        return values;
    }

    /// <summary>
    /// Gives parameter tensor <paramref name="name"/>'s fp32 values or moments, whole and row-major, to
    /// <paramref name="sink"/> in consecutive pieces of at most <see cref="GatherElements"/>, through one host buffer: how a
    /// checkpoint is written without a copy of the whole state in memory (a 7B model's fp32 weights and moments are 91 GB).
    /// Where this rank holds the tensor whole it is copied down; where the ranks hold slices of it (sharded), each piece
    /// is broadcast by the rank whose slice holds it, so every rank must call this together, for the same tensors in the
    /// same order (<c>OptimizerCheckpoint</c> follows the files' order); every rank's sink receives the values, and a rank
    /// that keeps nothing passes null (it only sends its pieces). Whole tensors need no other rank: a null sink returns at once.
    /// </summary>
    /// <exception cref="ArgumentException">No parameter of that name.</exception>
    public void StreamTensor(OptimizerState what, string name, Action<ReadOnlySpan<float>>? sink)
    {
        int i = IndexOf(name);
        Tensor? whole = what switch
        {
            OptimizerState.Parameters => _parameters?[i],
            OptimizerState.FirstMoment => FirstMoment?.Named[i].Tensor,
            _ => SecondMoment?.Named[i].Tensor,
        };
        long size = _sizes[i];
        if (whole is not null)
        {
            if (sink is not null) DownloadInPieces(whole, 1f, sink);
            return;
        }
        var shard = what switch
        {
            OptimizerState.Parameters => _masterShard!,
            OptimizerState.FirstMoment => _shardFirst!,
            _ => _shardSecond!,
        };
        var buffer = StreamBuffer();
        long slice = FlatLength / World.WorldSize, end = _offsets[i] + size;
        for (long flat = _offsets[i]; flat < end;)
        {
            // A piece within one rank's slice: that rank sends it.
            int owner = (int)(flat / slice);
            int count = (int)Math.Min(buffer.Length, Math.Min(end, (owner + 1) * slice) - flat);
            var piece = buffer.AsSpan(0, count);
            if (owner == World.Rank) _backend.Download<float>(shard.View(flat - _shardStart, new TensorShape(count)), piece);
            World.Broadcast(MemoryMarshal.AsBytes(piece), owner);
            sink?.Invoke(piece);
            flat += count;
        }
    }

    /// <summary>A tensor of this rank, times <paramref name="scale"/>, to <paramref name="sink"/> through the host buffer a piece at a time.</summary>
    private void DownloadInPieces(Tensor whole, float scale, Action<ReadOnlySpan<float>> sink)
    {
        var host = StreamBuffer();
        long size = whole.ElementCount;
        for (long at = 0; at < size; at += host.Length)
        {
            var piece = host.AsSpan(0, (int)Math.Min(host.Length, size - at));
            _backend.Download<float>(whole.View(at, new TensorShape(piece.Length)), piece);
            if (scale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(piece, scale, piece);
            sink(piece);
        }
    }

    /// <summary>The host buffer that <see cref="StreamTensor"/> and <see cref="LoadMoments"/> move a tensor's pieces through.</summary>
    private float[] StreamBuffer()
    {
        int length = (int)Math.Clamp(_sizes.Max(), 1, Math.Max(1, GatherElements));
        if (_streamBuffer?.Length != length) _streamBuffer = GC.AllocateUninitializedArray<float>(length);
        return _streamBuffer;
    }

    /// <summary>Elements of the host buffer checkpoints stream through (0 before the first): what a checkpoint holds on the host.</summary>
    internal int StreamBufferLength => _streamBuffer?.Length ?? 0;

    private int IndexOf(string name) => _index.TryGetValue(name, out int i) ? i : throw new ArgumentException($"the model has no parameter '{name}'", nameof(name));

    /// <summary>
    /// Sets the moments from a checkpoint's whole tensors: <paramref name="read"/>(which, name, start, destination) fills
    /// destination with elements [start, start + its length) of a parameter's exp_avg or exp_avg_sq (names and shapes
    /// checked by the caller). This rank reads only what it keeps (its slice, when sharded), a piece of at most
    /// <see cref="GatherElements"/> at a time.
    /// </summary>
    public void LoadMoments(Action<OptimizerState, string, long, Span<float>> read)
    {
        var buffer = StreamBuffer();
        foreach (var what in new[] { OptimizerState.FirstMoment, OptimizerState.SecondMoment })
        {
            for (int i = 0; i < _names.Length; i++)
            {
                // The parts of tensor i this rank keeps: (first element in the tensor, count, where it goes).
                var parts = !IsSharded
                    ? [(0L, _sizes[i], (what == OptimizerState.FirstMoment ? FirstMoment! : SecondMoment!).Named[i].Tensor)]
                    : Pieces(Math.Max(_shardStart, _offsets[i]), Math.Min(_shardEnd, _offsets[i] + _sizes[i]))
                        .Select(piece => ((long)piece.At, (long)piece.Count, ShardPiece(what == OptimizerState.FirstMoment ? _shardFirst! : _shardSecond!, piece))).ToArray();
                foreach (var (start, length, target) in parts)
                {
                    for (long at = 0; at < length; at += buffer.Length)
                    {
                        int count = (int)Math.Min(buffer.Length, length - at);
                        read(what, _names[i], start + at, buffer.AsSpan(0, count));
                        _backend.Upload<float>(buffer.AsSpan(0, count), target.View(at, new TensorShape(count)));
                    }
                }
            }
        }
    }

    /// <summary>
    /// Every rank's updated slice of the weights to every rank, all-gathered into the flat gradient buffer (free until
    /// the next backward zeroes it): with the master sharded, the master slices, rounded into the bf16 working copy;
    /// else this rank's pieces of the fp32 parameters go through the gradient slice (read by the update, free now) and
    /// come back whole into the parameters (and the working copy). No memory beyond the gradients'. With
    /// <see cref="KeepReducedGradients"/> the gradient slices are all-gathered into the flat buffer first and the weights
    /// travel through buffers of their own for the step.
    /// </summary>
    private void GatherWeights()
    {
        Tensor slice = _gradientShard!, flat = Gradients.Flat!;
        Tensor? ownSlice = null, ownFlat = null;
        if (KeepReducedGradients)
        {
            _collectives.AllGather(_gradientShard!, Gradients.Flat!);
            slice = ownSlice = _backend.Allocate(DType.Float32, _gradientShard!.Shape, "weights slice");
            flat = ownFlat = _backend.Allocate(DType.Float32, Gradients.Flat!.Shape, "gathered weights");
        }
        try
        {
            if (_masterShard is not null) _collectives.AllGather(_masterShard, flat);
            else
            {
                foreach (var piece in Pieces(_shardStart, _shardEnd)) _backend.Copy(PieceOf(_parameters!, piece), ShardPiece(slice, piece));
                _collectives.AllGather(slice, flat);
            }
            // Whole tensors, this rank's parts included (they come back as they went; the working copy's rounding is the update's).
            foreach (var piece in Pieces(0, FlatLength))
            {
                var gathered = flat.View(piece.Flat, new TensorShape(piece.Count));
                if (_parameters is not null) _backend.Copy(gathered, PieceOf(_parameters, piece));
                if (_workingCopies is not null) _backend.Convert(gathered, PieceOf(_workingCopies, piece));
            }
        }
        finally
        {
            ownSlice?.Dispose();
            ownFlat?.Dispose();
        }
    }

    /// <summary>A part of one parameter tensor: its index, its first element in it, its length, and its position in the flat layout.</summary>
    private readonly record struct Piece(int Tensor, int At, int Count, long Flat);

    /// <summary>Each parameter tensor's part of the flat range [start, end) (the layout's gaps belong to none).</summary>
    private IEnumerable<Piece> Pieces(long start, long end)
    {
        for (int i = 0; i < _offsets.Length; i++)
        {
            long offset = _offsets[i], a = Math.Max(offset, start), b = Math.Min(offset + _sizes[i], end);
            if (a < b) yield return new Piece(i, (int)(a - offset), (int)(b - a), a);
        }
    }

    /// <summary>A piece of one of <paramref name="tensors"/> (the parameters, or the working copy) as a 1-D view.</summary>
    private static Tensor PieceOf(Tensor[] tensors, Piece piece) => tensors[piece.Tensor].Reshape((int)tensors[piece.Tensor].ElementCount).SliceRows(piece.At, piece.Count);

    private Tensor ShardPiece(Tensor shard, Piece piece) => shard.View(piece.Flat - _shardStart, new TensorShape(piece.Count));

    public void Dispose()
    {
        _reduction?.Dispose();
        Gradients.Dispose();
        FirstMoment?.Dispose();
        SecondMoment?.Dispose();
        _shardFirst?.Dispose();
        _shardSecond?.Dispose();
        _gradientShard?.Dispose();
        _masterShard?.Dispose();
    }
}
