using OR1.Native;

namespace OR1.Model.Planning;

/// <summary>What a run is planned for: the model, its precision, the sequences and the device.</summary>
public sealed record MemoryPlanInput
{
    public required Qwen2Config Config { get; init; }
    public Precision Precision { get; init; } = Precision.Fp32;
    /// <summary>Activation recomputation (<see cref="Qwen2Activations.Recompute"/>).</summary>
    public bool Recompute { get; init; }
    /// <summary>Tokens of the longest sequence: prompt + response (one sequence must fit in a micro-batch).</summary>
    public int Context { get; init; } = 4096;
    /// <summary>Sequences the rollout engine decodes at once.</summary>
    public int Samples { get; init; } = 64;
    /// <summary>The device's memory in bytes.</summary>
    public long DeviceBytes { get; init; }
    /// <summary>A GPU (the kernel backends): the CUDA context and cuBLAS's workspace are set aside.</summary>
    public bool Gpu { get; init; }
    /// <summary>Tokens per micro-batch; null picks the largest that fits (<c>micro_batch_tokens: auto</c>).</summary>
    public int? MicroBatchTokens { get; init; }
    /// <summary>The KV cache's budget; 0 is the engine's default (every sample at full context, or half of what is left).</summary>
    public long KvCacheBytes { get; init; }
    /// <summary>
    /// Data-parallel ranks sharing the optimizer state (ZeRO-1, as <c>AdamWOptimizer</c> shards it: each rank keeps 1/ranks
    /// of the fp32 master weights and the Adam moments, and the slice of the summed gradient it updates them from; the
    /// weights the forward reads, gradients, activations and the cache stay whole on every rank). 1: no sharding.
    /// </summary>
    public int Ranks { get; init; } = 1;
    /// <summary>The cache's positions per page; 0 is the engine's default (128 on the Cpu backend, 32 on a GPU).</summary>
    public int PageSize { get; init; }
    /// <summary>The rollout engine's prefill budget in tokens (<see cref="Generation.Qwen2Generator.PrefillTokenBudget"/>).</summary>
    public int PrefillTokenBudget { get; init; } = Generation.Qwen2Generator.DefaultPrefillTokenBudget;
}

/// <summary>Bytes per token of a training micro-batch's activation arena, by part.</summary>
/// <param name="ResidualStream">The layers' inputs and the last layer's output (kept with or without recomputation), and the hidden scratch.</param>
/// <param name="Attention">Queries, keys, values, attention outputs and their log-sum-exp, per kept layer.</param>
/// <param name="Mlp">The residual after attention, gate, up and the SwiGLU output, per kept layer.</param>
/// <param name="Norms">Both norms' outputs and 1/rms per kept layer, the final norm and its 1/rms.</param>
/// <param name="LmHead">The log-prob's saved log-sum-exp.</param>
/// <param name="Backward">The backward's gradient buffers (one layer's at a time).</param>
/// <param name="MicroBatch">The micro-batch's tokens, positions, targets and per-token loss inputs.</param>
public readonly record struct ActivationParts(long ResidualStream, long Attention, long Mlp, long Norms, long LmHead, long Backward, long MicroBatch)
{
    public long Total => ResidualStream + Attention + Mlp + Norms + LmHead + Backward + MicroBatch;
}

/// <summary>
/// A run's memory, planned before anything is allocated (<see cref="MemoryPlanner.Plan"/>): the model's state, one
/// micro-batch's activations, the rollout engine's KV cache and buffers, and the scratch, against the device.
/// </summary>
public sealed record MemoryPlan(
    MemoryPlanInput Input,
    long Parameters,
    long WeightsBytes,
    long MasterWeightsBytes,
    long GradientsBytes,
    long OptimizerBytes,
    ActivationParts ActivationsPerToken,
    int MicroBatchTokens,
    long ActivationsBytes,
    long KvCachePerTokenBytes,
    long KvCacheBytes,
    long RolloutBuffersBytes,
    long LmHeadChunkBytes,
    long ReservedBytes,
    int MaxMicroBatchTokens,
    int MaxDecodeBatch,
    long MinimumBytes)
{
    /// <summary>The scratch: the LM head's logit tile, the rollout engine's arenas and logits, and (GPU) the context and workspace.</summary>
    public long ScratchBytes => LmHeadChunkBytes + RolloutBuffersBytes + ReservedBytes;

    public long TotalBytes => WeightsBytes + MasterWeightsBytes + GradientsBytes + OptimizerBytes + ActivationsBytes + KvCacheBytes + ScratchBytes;

    public long DeviceBytes => Input.DeviceBytes;

    /// <summary>Everything fits, and the longest sequence fits in one micro-batch.</summary>
    public bool Fits => TotalBytes <= DeviceBytes && MicroBatchTokens >= Input.Context && MaxDecodeBatch >= 1;

    /// <summary>What would make a plan that does not fit fit (null when it fits).</summary>
    public string? Advice
    {
        get
        {
            if (Fits) return null;
            if (MinimumBytes > DeviceBytes)
                return $"needs {Gb(MinimumBytes)} for one {Input.Context:N0}-token sequence, the device has {Gb(DeviceBytes)}: " +
                       (Input.Recompute ? "lower max_response_length, or shard the model's state across ranks" : "add --recompute or lower max_response_length");
            if (MicroBatchTokens < Input.Context)
                return $"a {Input.Context:N0}-token sequence needs a micro-batch of at least as many tokens; micro_batch_tokens is {MicroBatchTokens:N0}";
            // It fits with a smaller cache or micro-batch: the cache can give up what the activations need.
            long cacheLimit = DeviceBytes - (TotalBytes - KvCacheBytes);
            string cache = cacheLimit >= Input.Context * KvCachePerTokenBytes
                ? $"limit the KV cache to {Gb(cacheLimit)} (kv_cache_memory_bytes, --kv-cache-memory)"
                : "lower the rollout batch";
            string micro = MaxMicroBatchTokens >= Input.Context ? $" or lower micro_batch_tokens to {MaxMicroBatchTokens:N0}" : "";
            string recompute = Input.Recompute ? "" : ", or add --recompute";
            return $"needs {Gb(TotalBytes)}, the device has {Gb(DeviceBytes)}: {cache}{micro}{recompute}";
        }
    }

    /// <summary>Bytes as GB (10^9), as device memory is sold and reported.</summary>
    public static string Gb(long bytes) => $"{bytes / 1e9:F1} GB";
}

/// <summary>
/// Plans a run's memory from the shapes alone, with the same arithmetic as the allocations it predicts
/// (<see cref="Qwen2Weights"/>, <see cref="Qwen2Activations"/>, the AdamW optimizer, the rollout engine's KV cache and
/// arenas): tests hold each prediction to what the backends allocate.
/// </summary>
public static class MemoryPlanner
{
    /// <summary>The budget auto picks at most: beyond it a micro-batch gains nothing but latency.</summary>
    public const int AutoMicroBatchCap = 65536;

    /// <summary>Set aside on a GPU for the CUDA context, cuBLAS and the module images.</summary>
    public const long GpuReservedBytes = 1L << 30;

    /// <summary>Bytes of the micro-batch's own buffers per token: tokens, positions, offsets, targets and eight float inputs.</summary>
    public const int MicroBatchBytesPerToken = 12 * sizeof(int);

    /// <summary>Every parameter of the model (the LM head once when tied).</summary>
    public static long ParameterCount(Qwen2Config c)
    {
        long h = c.HiddenSize, inter = c.IntermediateSize, v = c.VocabSize;
        long qw = (long)c.NumAttentionHeads * c.HeadDim, kvw = (long)c.NumKeyValueHeads * c.HeadDim;
        long layer = h + qw * h + qw + 2 * (kvw * h + kvw) + h * qw + h + 3 * inter * h;
        return v * h * (c.TieWordEmbeddings ? 1 : 2) + c.NumHiddenLayers * layer + h;
    }

    /// <summary>A training arena's bytes per token, by part (<see cref="Qwen2Activations"/>'s buffers, exactly).</summary>
    public static ActivationParts ActivationsPerToken(Qwen2Config c, DType storage, bool recompute)
    {
        long s = storage.SizeOf(), f = sizeof(float), h = c.HiddenSize, inter = c.IntermediateSize;
        long qw = (long)c.NumAttentionHeads * c.HeadDim, kvw = (long)c.NumKeyValueHeads * c.HeadDim;
        long layers = recompute ? 1 : c.NumHiddenLayers;
        return new ActivationParts(
            ResidualStream: (c.NumHiddenLayers + 1) * h * s + h * s,
            Attention: layers * ((2 * qw + 2 * kvw) * s + c.NumAttentionHeads * f),
            Mlp: layers * (h + 3 * inter) * s,
            Norms: layers * (2 * h * s + 2 * f) + h * s + f,
            LmHead: f,
            Backward: (2 * h + 3 * inter + 2 * qw + 2 * kvw) * s,
            MicroBatch: MicroBatchBytesPerToken);
    }

    /// <summary>An inference arena's bytes per row (<see cref="Qwen2Activations.ForInference"/>): two residual buffers, one layer, the final norm.</summary>
    public static long InferenceBytesPerRow(Qwen2Config c, DType storage)
    {
        long s = storage.SizeOf(), f = sizeof(float), h = c.HiddenSize, inter = c.IntermediateSize;
        long qw = (long)c.NumAttentionHeads * c.HeadDim, kvw = (long)c.NumKeyValueHeads * c.HeadDim;
        long layer = (3 * h + 2 * qw + 2 * kvw + 3 * inter) * s + (2 + c.NumAttentionHeads) * f;
        return 2 * h * s + layer + h * s + 2 * f + h * s;
    }

    /// <summary>Keys and values of every layer for one token, in the storage precision.</summary>
    public static long KvCachePerToken(Qwen2Config c, DType storage) => 2L * c.NumHiddenLayers * c.NumKeyValueHeads * c.HeadDim * storage.SizeOf();

    /// <summary>
    /// The rollout engine's buffers besides its cache for <paramref name="samples"/> slots, as it allocates them when
    /// created (<see cref="Generation.Qwen2Generator"/>): the decode arena, the logits and last hidden rows, and the step
    /// inputs (seven runs of an int per slot and per prefill-budget row); with <paramref name="withPrefill"/> also the
    /// prefill arena at its largest (the slots and the budget's rows), which comes with the first prompts.
    /// </summary>
    public static long RolloutBuffers(Qwen2Config c, DType storage, int samples, int prefillBudget, bool withPrefill = true)
    {
        long prefillRows = withPrefill ? samples + (long)prefillBudget : 0;
        return (samples + prefillRows) * InferenceBytesPerRow(c, storage) + (long)samples * c.VocabSize * sizeof(float)
               + (long)samples * c.HiddenSize * storage.SizeOf() + 7L * (samples + prefillBudget) * sizeof(int);
    }

    /// <summary>The engine's cache for every sample at full context: whole pages per sample, and the sink page.</summary>
    public static long FullKvCache(Qwen2Config c, DType storage, int samples, int context, int pageSize) =>
        ((long)samples * ((context + pageSize - 1) / pageSize) + 1) * pageSize * KvCachePerToken(c, storage);

    public static MemoryPlan Plan(MemoryPlanInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var c = input.Config;
        if (input.Context < 1) throw new ArgumentException($"the context is {input.Context} tokens; it must be at least 1", nameof(input));
        if (input.Samples < 1) throw new ArgumentException($"the rollout batch is {input.Samples} samples; it must be at least 1", nameof(input));
        if (input.DeviceBytes < 1) throw new ArgumentException($"the device has {input.DeviceBytes} bytes; give its memory", nameof(input));
        if (input.Ranks < 1) throw new ArgumentException($"the ranks are {input.Ranks}; there must be at least one", nameof(input));
        if (input.MicroBatchTokens is < 1) throw new ArgumentException($"micro_batch_tokens is {input.MicroBatchTokens}; it must be positive (or auto)", nameof(input));
        var storage = input.Precision.StorageType();
        long parameters = ParameterCount(c);
        long weights = parameters * storage.SizeOf();
        long shard = (parameters + input.Ranks - 1) / input.Ranks; // the parameters whose optimizer state this rank holds
        long master = input.Precision == Precision.Bf16 ? shard * sizeof(float) : 0;
        // The flat gradient whole, and sharded the slice its reduce sums into (AdamWOptimizer's gradient shard). The flat
        // buffer and the slices have no Int32 limit (rows of 64 elements): 7B and 32B train on any number of ranks.
        long gradients = (parameters + (input.Ranks > 1 ? shard : 0)) * sizeof(float), optimizer = 2 * shard * sizeof(float);
        var parts = ActivationsPerToken(c, storage, input.Recompute);
        long perToken = parts.Total;
        long kvPerToken = KvCachePerToken(c, storage);
        int budget = Math.Max(1, input.PrefillTokenBudget);
        long rollout = RolloutBuffers(c, storage, input.Samples, budget);
        int pageSize = input.PageSize > 0 ? input.PageSize : input.Gpu ? 32 : 128;
        long reserved = input.Gpu ? GpuReservedBytes : 0;
        // The LM head's logit tile at its largest (a micro-batch of the whole budget), as the kernel backends plan it.
        long LmHead(int tokens) => LogProbTiling.Plan(tokens, c.VocabSize, c.HiddenSize, storage, input.DeviceBytes, 32L << 20, 8192).ScratchBytes;
        long state = weights + master + gradients + optimizer + reserved;

        // The engine's default cache: every sample at full context if half of what is left holds it, else that half,
        // but at least one sequence (Qwen2Generator with KvCacheSizing).
        long one = FullKvCache(c, storage, 1, input.Context, pageSize);
        long left = Math.Max(0, input.DeviceBytes - state - rollout - LmHead(input.Context));
        long pageBytes = (long)pageSize * kvPerToken, requestPages = (input.Context + pageSize - 1) / pageSize;
        long pages = input.KvCacheBytes > 0
            ? input.KvCacheBytes / pageBytes
            : Generation.KvCacheSizing.DefaultPages(input.Samples * requestPages, requestPages, pageBytes, left);
        long kv = (pages + 1) * pageBytes; // and the sink page, as the engine allocates

        // The LM head's scratch grows with the micro-batch (its row statistics, and in bf16 the fp32 d-hidden accumulator)
        // on top of a tile of bounded size: both are counted where the largest micro-batch is solved for.
        long lmPerToken = Math.Max(4L * sizeof(float), storage == DType.Float32 ? 0 : (long)c.HiddenSize * sizeof(float));
        long lmTile = LmHead(AutoMicroBatchCap) - lmPerToken * AutoMicroBatchCap;
        long room = input.DeviceBytes - state - rollout - kv - lmTile;
        int maxMicro = (int)Math.Clamp(room / (perToken + lmPerToken), 0, int.MaxValue);
        int micro = input.MicroBatchTokens ?? Math.Max(input.Context, Math.Min(maxMicro, AutoMicroBatchCap));
        long activations = (long)micro * perToken;
        long lmHead = LmHead(micro);
        long decodeRoom = input.DeviceBytes - state - rollout - activations - lmHead;
        int maxDecode = (int)Math.Clamp(decodeRoom / Math.Max(1, one), 0, int.MaxValue);
        long minimum = state + RolloutBuffers(c, storage, 1, budget) + one + (long)input.Context * perToken + LmHead(input.Context);
        return new MemoryPlan(input, parameters, weights, master, gradients, optimizer, parts, micro, activations, kvPerToken, kv, rollout, lmHead, reserved,
            maxMicro, maxDecode, minimum);
    }

    /// <summary>The memory of a device named by <c>--device</c>: cpu (the machine's available memory), h100, h200, or a size in GB.</summary>
    public static (long Bytes, bool Gpu)? DeviceMemory(string device, long? hostAvailableBytes)
    {
        switch (device.Trim().ToLowerInvariant())
        {
            case "cpu": return hostAvailableBytes is { } host ? (host, false) : null;
            // What nvidia-smi reports as the cards' total memory (81,559 MiB and 143,771 MiB).
            case "h100": return (81559L << 20, true);
            case "h200": return (143771L << 20, true);
        }
        string text = device.Trim().ToLowerInvariant();
        if (text.EndsWith("gb", StringComparison.Ordinal)) text = text[..^2];
        return double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double gb) && gb > 0 && gb < 1e6
            ? ((long)(gb * 1e9), true)
            : null;
    }
}
