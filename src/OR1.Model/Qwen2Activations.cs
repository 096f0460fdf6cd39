using OR1.Native;

namespace OR1.Model;

/// <summary>What the forward pass of one layer saves for the backward pass.</summary>
internal sealed class LayerActivations(IBackend backend, Qwen2Config c, int capacity, DType storage) : IDisposable
{
    /// <summary>Normalised input of the attention block [T, H] and its 1/rms [T].</summary>
    public Tensor Norm1 { get; } = backend.Allocate(storage, new TensorShape(capacity, c.HiddenSize));
    public Tensor InvRms1 { get; } = backend.Allocate(DType.Float32, new TensorShape(capacity));
    /// <summary>Queries and keys after bias and RoPE, values after bias.</summary>
    public Tensor Query { get; } = backend.Allocate(storage, new TensorShape(capacity, c.NumAttentionHeads * c.HeadDim));
    public Tensor Key { get; } = backend.Allocate(storage, new TensorShape(capacity, c.NumKeyValueHeads * c.HeadDim));
    public Tensor Value { get; } = backend.Allocate(storage, new TensorShape(capacity, c.NumKeyValueHeads * c.HeadDim));
    /// <summary>Attention output before o_proj [T, Hq*D] and its log-sum-exp [T, Hq].</summary>
    public Tensor Attention { get; } = backend.Allocate(storage, new TensorShape(capacity, c.NumAttentionHeads * c.HeadDim));
    public Tensor AttentionLse { get; } = backend.Allocate(DType.Float32, new TensorShape(capacity, c.NumAttentionHeads));
    /// <summary>Residual stream after the attention block [T, H].</summary>
    public Tensor Middle { get; } = backend.Allocate(storage, new TensorShape(capacity, c.HiddenSize));
    public Tensor Norm2 { get; } = backend.Allocate(storage, new TensorShape(capacity, c.HiddenSize));
    public Tensor InvRms2 { get; } = backend.Allocate(DType.Float32, new TensorShape(capacity));
    public Tensor Gate { get; } = backend.Allocate(storage, new TensorShape(capacity, c.IntermediateSize));
    public Tensor Up { get; } = backend.Allocate(storage, new TensorShape(capacity, c.IntermediateSize));
    public Tensor Activation { get; } = backend.Allocate(storage, new TensorShape(capacity, c.IntermediateSize));

    public void Dispose()
    {
        foreach (var t in new[] { Norm1, InvRms1, Query, Key, Value, Attention, AttentionLse, Middle, Norm2, InvRms2, Gate, Up, Activation })
            t.Dispose();
    }
}

/// <summary>
/// The activation arena (llm.c style): every buffer the forward saves and the backward reads, plus
/// the backward's scratch, allocated once for a token capacity. A micro-batch of T &lt;= capacity tokens
/// uses row views [0, T) of each buffer, so a training loop allocates nothing per step.
/// </summary>
public sealed class Qwen2Activations : IDisposable
{
    private readonly List<Tensor> _owned = [];

    /// <summary>
    /// Allocates buffers for micro-batches of up to <paramref name="capacity"/> tokens; activations and their gradients
    /// in <paramref name="storage"/> (the model's precision), the saved statistics (1/rms, log-sum-exp) in fp32. With
    /// <paramref name="recompute"/> (activation recomputation), the forward keeps only each layer's input (the residual
    /// stream) and one layer's buffers serve every layer: <see cref="Qwen2Model.Backward"/> runs each layer's forward
    /// again, with the same kernels on the same inputs, just before that layer's backward, so the gradients are the same
    /// bits for about one hidden vector per layer per token instead of the whole layer's activations.
    /// </summary>
    public Qwen2Activations(IBackend backend, Qwen2Config config, int capacity, DType storage = DType.Float32, bool recompute = false)
        : this(backend, config, capacity, storage, inference: false, recompute)
    {
    }

    /// <summary>
    /// The inference arena: what a forward pass needs and nothing a backward would (generation's prefill and decode).
    /// One layer's buffers serve every layer in turn and the residual stream alternates between two buffers, so its
    /// size does not grow with depth; there are no gradients. <see cref="Qwen2Model.Backward"/> refuses it.
    /// </summary>
    public static Qwen2Activations ForInference(IBackend backend, Qwen2Config config, int capacity, DType storage = DType.Float32) =>
        new(backend, config, capacity, storage, inference: true, recompute: false);

    private Qwen2Activations(IBackend backend, Qwen2Config config, int capacity, DType storage, bool inference, bool recompute)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Backend = backend;
        Config = config;
        Capacity = capacity;
        Storage = storage;
        IsInference = inference;
        Recompute = recompute;
        int h = config.HiddenSize;
        if (inference)
        {
            Tensor even = Own(capacity, h), odd = Own(capacity, h);
            Residuals = Enumerable.Range(0, config.NumHiddenLayers + 1).Select(l => l % 2 == 0 ? even : odd).ToArray();
            var shared = new LayerActivations(backend, config, capacity, storage);
            Layers = Enumerable.Repeat(shared, config.NumHiddenLayers).ToArray();
            FinalNorm = Own(capacity, h);
            FinalInvRms = OwnFloat32(capacity);
            LogProbLse = OwnFloat32(capacity);
            HiddenScratch = Own(capacity, h);
            GradResidual = GradHidden = GradInter1 = GradInter2 = GradInter3 = GradQuery = GradAttention = GradKey = GradValue = null!;
            return;
        }
        Residuals = Enumerable.Range(0, config.NumHiddenLayers + 1).Select(_ => Own(capacity, h)).ToArray();
        if (recompute)
        {
            // The backward recomputes each layer into these buffers, one layer at a time.
            var working = new LayerActivations(backend, config, capacity, storage);
            Layers = Enumerable.Repeat(working, config.NumHiddenLayers).ToArray();
        }
        else Layers = Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new LayerActivations(backend, config, capacity, storage)).ToArray();
        FinalNorm = Own(capacity, h);
        FinalInvRms = OwnFloat32(capacity);
        LogProbLse = OwnFloat32(capacity);
        HiddenScratch = Own(capacity, h);
        GradResidual = Own(capacity, h);
        GradHidden = Own(capacity, h);
        GradInter1 = Own(capacity, config.IntermediateSize);
        GradInter2 = Own(capacity, config.IntermediateSize);
        GradInter3 = Own(capacity, config.IntermediateSize);
        int qw = config.NumAttentionHeads * config.HeadDim, kvw = config.NumKeyValueHeads * config.HeadDim;
        GradQuery = Own(capacity, qw);
        GradAttention = Own(capacity, qw);
        GradKey = Own(capacity, kvw);
        GradValue = Own(capacity, kvw);
    }

    public IBackend Backend { get; }
    public Qwen2Config Config { get; }

    /// <summary>Largest micro-batch in tokens.</summary>
    public int Capacity { get; }

    /// <summary>The dtype of the activations and their gradients.</summary>
    public DType Storage { get; }

    /// <summary>An inference arena (<see cref="ForInference"/>): nothing saved for a backward, no gradients.</summary>
    public bool IsInference { get; }

    /// <summary>Activation recomputation: the forward keeps only the layers' inputs; the backward recomputes each layer.</summary>
    public bool Recompute { get; }

    /// <summary>Residual stream entering layer l (index l) and leaving the last layer (index L) [T, H].</summary>
    internal Tensor[] Residuals { get; }
    internal LayerActivations[] Layers { get; }
    /// <summary>The final RMSNorm output: the hidden states the LM head reads [T, H].</summary>
    public Tensor FinalNorm { get; }
    internal Tensor FinalInvRms { get; }
    /// <summary>Log-sum-exp saved by the log-prob forward [T].</summary>
    internal Tensor LogProbLse { get; }
    internal Tensor HiddenScratch { get; }
    internal Tensor GradResidual { get; }
    internal Tensor GradHidden { get; }
    internal Tensor GradInter1 { get; }
    internal Tensor GradInter2 { get; }
    internal Tensor GradInter3 { get; }
    internal Tensor GradQuery { get; }
    internal Tensor GradAttention { get; }
    internal Tensor GradKey { get; }
    internal Tensor GradValue { get; }

    private Tensor Own(params int[] shape) => Own(Storage, shape);

    private Tensor OwnFloat32(params int[] shape) => Own(DType.Float32, shape);

    private Tensor Own(DType dtype, int[] shape)
    {
        var t = Backend.Allocate(dtype, new TensorShape(shape));
        _owned.Add(t);
        return t;
    }

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        foreach (var l in Layers.Distinct()) l.Dispose();
    }
}
