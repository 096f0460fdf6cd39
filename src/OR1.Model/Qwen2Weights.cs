using OR1.Native;

namespace OR1.Model;

/// <summary>The tensors of one decoder layer, named as in HF Qwen2 (model.layers.{i}.*).</summary>
public sealed record Qwen2LayerWeights(
    Tensor InputNorm,
    Tensor QueryWeight, Tensor QueryBias,
    Tensor KeyWeight, Tensor KeyBias,
    Tensor ValueWeight, Tensor ValueBias,
    Tensor OutputWeight,
    Tensor PostAttentionNorm,
    Tensor GateWeight, Tensor UpWeight, Tensor DownWeight);

/// <summary>
/// Every parameter of a Qwen2ForCausalLM on one backend, addressable by its HF checkpoint name, so that
/// loading and saving is a mapping. The same class holds gradients and optimizer moments (same shapes), and, in one
/// dtype for all its tensors, the bf16 working copy of mixed precision or the fp32 master.
/// With tied embeddings <see cref="LmHead"/> is the embedding tensor itself and is listed once.
/// </summary>
public sealed class Qwen2Weights : IDisposable
{
    /// <summary>Where each tensor of a flat layout starts: a multiple of this many elements (256 bytes in fp32: 16-byte vector loads and whole cache lines).</summary>
    public const int FlatAlignment = 64;

    private readonly List<(string Name, Tensor Tensor)> _named = [];
    private readonly Dictionary<string, Tensor> _byName = new(StringComparer.Ordinal);
    // Where each tensor of the flat layout starts (FlatLayout's), or null.
    private readonly long[]? _offsets;

    /// <summary>Allocates zero-filled parameters for <paramref name="config"/> on <paramref name="backend"/>, stored as <paramref name="dtype"/>.</summary>
    /// <param name="backend">Where the tensors live.</param>
    /// <param name="config">The shapes.</param>
    /// <param name="dtype">The dtype of every tensor.</param>
    /// <param name="flatMultiple">0: a buffer per tensor. Otherwise every tensor is a view of one buffer (<see cref="Flat"/>):
    /// tensors in checkpoint order, each starting at a multiple of <see cref="FlatAlignment"/> elements, the gaps and the
    /// tail zero, the whole a multiple of this many elements (itself a multiple of <see cref="FlatAlignment"/>: the buffer is
    /// <see cref="FlatShape"/>'s rows). Gradients are kept so, for the data-parallel collectives (one reduction over one
    /// buffer, cut into equal slices per rank).</param>
    public Qwen2Weights(IBackend backend, Qwen2Config config, DType dtype = DType.Float32, int flatMultiple = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(flatMultiple);
        Backend = backend;
        Config = config;
        DType = dtype;
        if (flatMultiple > 0)
        {
            if (flatMultiple % FlatAlignment != 0)
                throw new ArgumentException($"a flat multiple of {flatMultiple} elements is not a multiple of the {FlatAlignment}-element rows of the flat buffer", nameof(flatMultiple));
            (_offsets, long length) = FlatLayout(config, flatMultiple);
            RequireFlatLength(length, "Qwen2Weights", nameof(config));
            Flat = backend.Allocate(dtype, FlatShape(length), "flat");
            backend.Fill(Flat, 0f);
        }
        int h = config.HiddenSize, inter = config.IntermediateSize, v = config.VocabSize;
        int qw = config.NumAttentionHeads * config.HeadDim, kvw = config.NumKeyValueHeads * config.HeadDim;
        Embedding = Add("model.embed_tokens.weight", v, h);
        var layers = new Qwen2LayerWeights[config.NumHiddenLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            layers[i] = new Qwen2LayerWeights(
                Add(p + "input_layernorm.weight", h),
                Add(p + "self_attn.q_proj.weight", qw, h), Add(p + "self_attn.q_proj.bias", qw),
                Add(p + "self_attn.k_proj.weight", kvw, h), Add(p + "self_attn.k_proj.bias", kvw),
                Add(p + "self_attn.v_proj.weight", kvw, h), Add(p + "self_attn.v_proj.bias", kvw),
                Add(p + "self_attn.o_proj.weight", h, qw),
                Add(p + "post_attention_layernorm.weight", h),
                Add(p + "mlp.gate_proj.weight", inter, h), Add(p + "mlp.up_proj.weight", inter, h), Add(p + "mlp.down_proj.weight", h, inter));
        }
        Layers = layers;
        FinalNorm = Add("model.norm.weight", h);
        LmHead = config.TieWordEmbeddings ? Embedding : Add("lm_head.weight", v, h);
    }

    public IBackend Backend { get; }

    /// <summary>The one buffer every tensor is a view of (null unless made with a flat multiple), of <see cref="FlatShape"/>: address it by element offsets.</summary>
    public Tensor? Flat { get; }

    /// <summary>Where tensor <paramref name="index"/> of <see cref="Named"/> starts in <see cref="Flat"/> (in elements).</summary>
    public long FlatOffset(int index) => _offsets is null ? throw new InvalidOperationException("these weights are not one flat buffer") : _offsets[index];

    /// <summary>Tensors per decoder layer (<see cref="Qwen2LayerWeights"/>), consecutive in <see cref="Named"/> after the embedding.</summary>
    private const int LayerTensorCount = 12;

    /// <summary>Where layer <paramref name="layer"/>'s first tensor starts in <see cref="Flat"/>: its tensors and every later one's lie beyond.</summary>
    public long LayerFlatStart(int layer) => FlatOffset(1 + LayerTensorCount * layer);

    /// <summary>Where the final norm starts in <see cref="Flat"/>: it, and the LM head when untied, lie beyond.</summary>
    public long HeadFlatStart => FlatOffset(1 + LayerTensorCount * Layers.Count);

    /// <summary>
    /// The most elements a flat layout may have. A tensor's dimensions are Int32, so the flat buffer (and each rank's slice
    /// of it) is a 2-D tensor of rows of <see cref="FlatAlignment"/> elements (<see cref="FlatShape"/>), and the limit is
    /// Int32.MaxValue rows: 1.37e11 elements, past DeepSeek-R1-Distill-Qwen-32B's 32.8e9. Rows of the alignment unit, not
    /// longer ones: every layout (its length a multiple of ranks x the alignment) is already whole rows, so no padding is
    /// added and the layout of every model is what it was when the buffer was one Int32 dimension (the same buckets, the
    /// same sums). What moves a whole flat buffer or slice counts in Int64 (NCCL's size_t) or in calls of at most Int32
    /// elements (<see cref="OR1.Native.Distributed.TensorCollectives"/>), never one .NET array of it.
    /// </summary>
    public const long MaxFlatLength = (long)int.MaxValue * FlatAlignment;

    /// <summary>
    /// Throws <paramref name="op"/>'s <see cref="ArgumentException"/> naming <paramref name="argument"/> when a flat layout
    /// of <paramref name="length"/> elements is longer than <see cref="MaxFlatLength"/>, before anything is allocated.
    /// </summary>
    public static void RequireFlatLength(long length, string op, string argument)
    {
        if (length > MaxFlatLength)
            throw new ArgumentException($"{op}: argument '{argument}' asks for a flat gradient layout of {length:N0} elements, more than the " +
                                        $"{MaxFlatLength:N0} one flat buffer holds ({int.MaxValue:N0} rows of {FlatAlignment} elements)", argument);
    }

    /// <summary>
    /// The shape of a flat buffer (or of a rank's slice of one) of <paramref name="length"/> elements: [length / 64, 64]
    /// (see <see cref="MaxFlatLength"/>). Read it by element offsets (<see cref="Tensor.View"/> takes a long offset and
    /// any shape that fits, so a tensor's piece is a 1-D view wherever it starts).
    /// </summary>
    /// <exception cref="ArgumentException">A length that is not whole rows, or more than <see cref="MaxFlatLength"/>.</exception>
    public static TensorShape FlatShape(long length)
    {
        if (length < 0 || length % FlatAlignment != 0)
            throw new ArgumentException($"a flat buffer of {length:N0} elements is not whole rows of {FlatAlignment}", nameof(length));
        RequireFlatLength(length, nameof(FlatShape), nameof(length));
        return new TensorShape((int)(length / FlatAlignment), FlatAlignment);
    }

    /// <summary>
    /// The flat layout of a config's tensors (see the constructor's <c>flatMultiple</c>): where each tensor of
    /// <see cref="Named"/>'s order starts, and the layout's length. Computed without allocating anything.
    /// </summary>
    public static (long[] Offsets, long Length) FlatLayout(Qwen2Config config, int flatMultiple)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(flatMultiple, 1);
        var offsets = new List<long>();
        long length = 0;
        foreach (long n in TensorSizes(config))
        {
            offsets.Add(length);
            length += (n + FlatAlignment - 1) / FlatAlignment * FlatAlignment;
        }
        return (offsets.ToArray(), (length + flatMultiple - 1) / flatMultiple * flatMultiple);
    }

    /// <summary>The element counts of a config's tensors, in checkpoint order (each distinct tensor once).</summary>
    private static IEnumerable<long> TensorSizes(Qwen2Config config)
    {
        long h = config.HiddenSize, inter = config.IntermediateSize, v = config.VocabSize;
        long qw = (long)config.NumAttentionHeads * config.HeadDim, kvw = (long)config.NumKeyValueHeads * config.HeadDim;
        yield return v * h;
        for (int i = 0; i < config.NumHiddenLayers; i++)
            foreach (long n in new[] { h, qw * h, qw, kvw * h, kvw, kvw * h, kvw, h * qw, h, inter * h, inter * h, h * inter }) yield return n;
        yield return h;
        if (!config.TieWordEmbeddings) yield return v * h;
    }

    public Qwen2Config Config { get; }

    /// <summary>The dtype of every tensor (Float32, or BFloat16 for a mixed-precision working copy).</summary>
    public DType DType { get; }

    /// <summary>model.embed_tokens.weight [vocab, hidden].</summary>
    public Tensor Embedding { get; }

    public IReadOnlyList<Qwen2LayerWeights> Layers { get; }

    /// <summary>The weights the forward multiplies by (each layer's seven projections, then the LM head): MatMul's B operands.</summary>
    public IReadOnlyList<Tensor> ProjectionWeights =>
        [.. Layers.SelectMany(l => new[] { l.QueryWeight, l.KeyWeight, l.ValueWeight, l.OutputWeight, l.GateWeight, l.UpWeight, l.DownWeight }), LmHead];

    /// <summary>model.norm.weight [hidden].</summary>
    public Tensor FinalNorm { get; }

    /// <summary>lm_head.weight [vocab, hidden], or the embedding when tied.</summary>
    public Tensor LmHead { get; }

    /// <summary>Each distinct tensor once, with its HF name, in checkpoint order.</summary>
    public IReadOnlyList<(string Name, Tensor Tensor)> Named => _named;

    /// <summary>The tensor of an HF parameter name.</summary>
    public Tensor this[string name] => _byName.TryGetValue(name, out var t)
        ? t
        : throw new KeyNotFoundException($"Qwen2 has no parameter named '{name}' for this config");

    /// <summary>Total number of scalar parameters (tied embeddings counted once).</summary>
    public long ParameterCount => _named.Sum(p => p.Tensor.ElementCount);

    /// <summary>Sets every tensor to zero (gradients between steps).</summary>
    public void Zero()
    {
        if (Flat is not null)
        {
            Backend.Fill(Flat, 0f);
            return;
        }
        foreach (var (_, t) in _named) Backend.Fill(t, 0f);
    }

    /// <summary>
    /// HF's initialisation for Qwen2: linear and embedding weights ~ N(0, std^2), biases 0, norm weights 1,
    /// drawn on the host from a seeded generator, so a seed gives the same model on every backend.
    /// </summary>
    public void InitializeRandom(int seed, float std = 0.02f)
    {
        var random = new Random(seed);
        foreach (var (name, tensor) in _named)
        {
            var data = new float[tensor.ElementCount];
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) Array.Fill(data, 1f);
            else if (!name.EndsWith(".bias", StringComparison.Ordinal))
            {
                for (int i = 0; i < data.Length; i++)
                {
                    double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
                    data[i] = (float)(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
                }
            }
            Set(name, data);
        }
    }

    /// <summary>Uploads float values into the tensor <paramref name="name"/>, rounding to bf16 (nearest even) when it stores bf16.</summary>
    public void Set(string name, ReadOnlySpan<float> values)
    {
        var tensor = this[name];
        if (DType == DType.Float32)
        {
            Backend.Upload(values, tensor);
            return;
        }
        var rounded = new BFloat16[values.Length];
        for (int i = 0; i < values.Length; i++) rounded[i] = (BFloat16)values[i];
        Backend.Upload<BFloat16>(rounded, tensor);
    }

    /// <summary>The values of <paramref name="tensor"/> (one of these weights) as floats, widening bf16 exactly.</summary>
    public float[] ReadFloats(Tensor tensor)
    {
        var data = new float[tensor.ElementCount];
        if (tensor.DType == DType.Float32)
        {
            Backend.Download<float>(tensor, data);
            return data;
        }
        var raw = new BFloat16[tensor.ElementCount];
        Backend.Download<BFloat16>(tensor, raw);
        for (int i = 0; i < raw.Length; i++) data[i] = (float)raw[i];
        return data;
    }

    /// <summary>Copies every tensor of <paramref name="source"/> (same config) into this one, converting dtypes (fp32 master to a bf16 working copy rounds to nearest even).</summary>
    public void CopyFrom(Qwen2Weights source)
    {
        for (int i = 0; i < _named.Count; i++) Backend.Convert(source._named[i].Tensor, _named[i].Tensor);
    }

    private Tensor Add(string name, params int[] shape)
    {
        // Tensors are added in FlatLayout's order, so the next one's offset is the layout's entry at the count so far.
        var t = Flat is null
            ? Backend.Allocate(DType, new TensorShape(shape), name)
            : Flat.View(_offsets![_named.Count], new TensorShape(shape)).WithName(name);
        _named.Add((name, t));
        _byName[name] = t;
        return t;
    }

    public void Dispose()
    {
        foreach (var (_, t) in _named) t.Dispose();
        Flat?.Dispose();
    }
}
