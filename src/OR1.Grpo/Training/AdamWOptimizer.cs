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
/// <para>Sharded (ZeRO-1, several ranks): the parameters are seen as one flat vector cut into the ranks' contiguous
/// slices; each rank keeps the Adam moments of its slice only, updates that slice (the gradients are whole on every
/// rank after their all-reduce, so the clip's norm is the same everywhere), and the ranks all-gather the updated
/// slices, so every rank holds the new weights and a rank's optimizer state is 1/N of the model's.</para>
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    private readonly IBackend _backend;
    private readonly AdamWSlot[] _slots;
    private readonly Tensor[] _gradientTensors;
    private readonly Tensor[] _parameters;
    private readonly Tensor? _shardFirst, _shardSecond;
    private readonly long _shardStart, _shardEnd;
    private float[] _gatherMine = [], _gatherAll = [];

    /// <param name="model">The model to train.</param>
    /// <param name="world">The data-parallel ranks (one process when null).</param>
    /// <param name="shard">Shard the moments over the ranks (ZeRO-1); with one rank there is nothing to shard.</param>
    /// <exception cref="ArgumentException">A bf16 model without fp32 master weights (build or load it for training).</exception>
    public AdamWOptimizer(Qwen2Model model, ICollectives? world = null, bool shard = false)
    {
        if (model.Parameters.DType != DType.Float32)
            throw new ArgumentException("a bf16 model needs fp32 master weights to train; create or load it with master weights", nameof(model));
        _backend = model.Backend;
        World = world ?? SingleProcess.Instance;
        IsSharded = shard && World.WorldSize > 1;
        Gradients = new Qwen2Weights(_backend, model.Config);
        var parameters = model.Parameters.Named;
        var working = model.Master is null ? null : model.Weights.Named;
        _parameters = parameters.Select(p => p.Tensor).ToArray();
        ParameterCount = _parameters.Sum(t => t.ElementCount);
        long before = _backend.AllocatedBytes;
        if (!IsSharded)
        {
            FirstMoment = new Qwen2Weights(_backend, model.Config);
            SecondMoment = new Qwen2Weights(_backend, model.Config);
            _slots = parameters.Select((p, i) => new AdamWSlot(p.Tensor, Gradients.Named[i].Tensor, FirstMoment.Named[i].Tensor, SecondMoment.Named[i].Tensor,
                WorkingCopy: working?[i].Tensor)).ToArray();
        }
        else
        {
            if (working is not null || _parameters.Any(t => !t.IsHostVisible))
                throw new NotSupportedException($"a sharded optimizer on the {_backend.Kind} backend gathers its slices on the device (NCCL), which this build does not have yet; " +
                                                "use --shard-optimizer false, or the cpu backend");
            (_shardStart, _shardEnd) = ShardOf(ParameterCount, World.WorldSize, World.Rank);
            int owned = checked((int)(_shardEnd - _shardStart));
            _shardFirst = _backend.Allocate(DType.Float32, new TensorShape(Math.Max(1, owned)), "exp_avg shard");
            _shardSecond = _backend.Allocate(DType.Float32, new TensorShape(Math.Max(1, owned)), "exp_avg_sq shard");
            // One slot per parameter tensor that overlaps this rank's slice, over the overlap only.
            _slots = Pieces(_shardStart, _shardEnd).Select(piece =>
            {
                var (i, at, count, flat) = piece;
                int n = (int)_parameters[i].ElementCount, m = (int)(flat - _shardStart);
                return new AdamWSlot(_parameters[i].Reshape(n).SliceRows(at, count), Gradients.Named[i].Tensor.Reshape(n).SliceRows(at, count),
                    _shardFirst.SliceRows(m, count), _shardSecond.SliceRows(m, count));
            }).ToArray();
        }
        MomentBytes = _backend.AllocatedBytes - before;
        _gradientTensors = Gradients.Named.Select(n => n.Tensor).ToArray();
    }

    /// <summary>The parameters [start, end) of the flat vector that <paramref name="rank"/> of <paramref name="world"/> updates.</summary>
    public static (long Start, long End) ShardOf(long parameters, int world, int rank) => (parameters * rank / world, parameters * (rank + 1) / world);

    /// <summary>The ranks this optimizer steps with.</summary>
    public ICollectives World { get; }

    /// <summary>Whether this rank keeps only its slice's moments (ZeRO-1).</summary>
    public bool IsSharded { get; }

    /// <summary>Parameters of the model.</summary>
    public long ParameterCount { get; }

    /// <summary>Bytes of Adam moments this rank holds (counted from its allocations): the whole model's, or its slice's when sharded.</summary>
    public long MomentBytes { get; }

    /// <summary>dL/dθ, accumulated by the model's backward; <see cref="ZeroGradients"/> before each optimizer step's micro-batches.</summary>
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

    public void ZeroGradients() => Gradients.Zero();

    /// <summary>
    /// Clips by the global norm and applies AdamW. Returns the norm before clipping.
    /// </summary>
    /// <exception cref="InvalidOperationException">The norm is not finite; nothing was changed (weights, moments,
    /// step count and <see cref="LastClipScale"/> are as before).</exception>
    public float Step(AdamWOptions options, double maxGradNorm)
    {
        float norm = _backend.GlobalNorm(_gradientTensors);
        if (!float.IsFinite(norm))
            throw new InvalidOperationException($"the gradient norm is {norm}; the update was not applied (lower the learning rate, check the data)");
        float scale = (float)Math.Min(1.0, maxGradNorm / (norm + 1e-6));
        _backend.AdamWStep(_slots, options, ++Steps, scale);
        LastClipScale = scale;
        if (IsSharded) GatherSlices();
        return norm;
    }

    /// <summary>Every rank's updated slice to every rank: the flat parameter vector all-gathered (slices padded to one size).</summary>
    private unsafe void GatherSlices()
    {
        int world = World.WorldSize, chunk = checked((int)((ParameterCount + world - 1) / world));
        if (_gatherMine.Length != chunk) (_gatherMine, _gatherAll) = (new float[chunk], new float[(long)chunk * world]);
        _backend.Synchronize();
        ForEachPiece(_shardStart, _shardEnd, (span, flat) => span.CopyTo(_gatherMine.AsSpan((int)(flat - _shardStart))));
        World.AllGather(_gatherMine, _gatherAll);
        for (int q = 0; q < world; q++)
        {
            var (start, end) = ShardOf(ParameterCount, world, q);
            long from = (long)q * chunk;
            ForEachPiece(start, end, (span, flat) => _gatherAll.AsSpan((int)(from + flat - start), span.Length).CopyTo(span));
        }
    }

    /// <summary>
    /// Each parameter tensor's part of the flat range [start, end): the tensor's index, the part's first element in it,
    /// its length, and its position in the flat vector.
    /// </summary>
    private IEnumerable<(int Tensor, int At, int Count, long Flat)> Pieces(long start, long end)
    {
        long offset = 0;
        for (int i = 0; i < _parameters.Length; i++)
        {
            long n = _parameters[i].ElementCount, a = Math.Max(offset, start), b = Math.Min(offset + n, end);
            if (a < b) yield return (i, (int)(a - offset), (int)(b - a), a);
            offset += n;
        }
    }

    private delegate void PieceVisitor(Span<float> parameters, long flatStart);

    /// <summary>Calls <paramref name="visit"/> with each parameter tensor's part of the flat range [start, end) (host memory).</summary>
    private unsafe void ForEachPiece(long start, long end, PieceVisitor visit)
    {
        foreach (var (i, at, count, flat) in Pieces(start, end))
            visit(new Span<float>((float*)_parameters[i].DevicePointer + at, count), flat);
    }

    public void Dispose()
    {
        Gradients.Dispose();
        FirstMoment?.Dispose();
        SecondMoment?.Dispose();
        _shardFirst?.Dispose();
        _shardSecond?.Dispose();
    }
}
