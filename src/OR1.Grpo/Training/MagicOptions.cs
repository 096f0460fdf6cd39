namespace OR1.Grpo.Training;

/// <summary>
/// Everything a MAGIC update needs, with the recipe's values as defaults (docs/RECIPE.md steps 4 to 8).
/// </summary>
public sealed record MagicOptions
{
    /// <summary>AdamW learning rate (constant).</summary>
    public double LearningRate { get; init; } = 1e-6;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double AdamEpsilon { get; init; } = 1e-8;
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>Global L2 norm the gradient is clipped to.</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    /// <summary>eps_low and eps_high of the clipped ratio.</summary>
    public float ClipLow { get; init; } = 0.2f;
    public float ClipHigh { get; init; } = 0.2f;

    /// <summary>The adaptive entropy controller.</summary>
    public EntropyControlOptions EntropyControl { get; init; } = new();

    /// <summary>When set, this exact entropy coefficient is used and the controller is bypassed (`or1 step --entropy-coef`).</summary>
    public double? FixedEntropyCoefficient { get; init; }

    /// <summary>Temperature of the log-probs and entropies in the loss (the rollout temperature).</summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Optimizer steps per rollout batch: the kept groups are split into this many mini-batches.</summary>
    public int MiniBatches { get; init; } = 1;

    /// <summary>Token-level mean (paper) or verl's per-micro-batch weighting.</summary>
    public LossAggregation Aggregation { get; init; } = LossAggregation.TokenMean;

    /// <summary>Weight of the k3 KL penalty to the initial policy; 0 (off, no reference model) by default.</summary>
    public double KlCoefficient { get; init; }

    /// <summary>Tokens per micro-batch forward/backward: the memory bound of a step.</summary>
    public int MicroBatchTokens { get; init; } = 8192;

    /// <summary>
    /// Activation recomputation: the forward keeps only each layer's input and the backward recomputes the layer
    /// (<see cref="OR1.Model.Qwen2Activations.Recompute"/>); the gradients and updates are the same bits, the activations about one
    /// hidden vector per layer per token, for about a third more compute.
    /// </summary>
    public bool Recompute { get; init; }

    /// <summary>
    /// With several ranks, shard the Adam moments over them (ZeRO-1, <see cref="AdamWOptimizer.IsSharded"/>): the same
    /// update, 1/N of the optimizer state per rank. On by default; it changes nothing in one process.
    /// </summary>
    public bool ShardOptimizer { get; init; } = true;

    /// <summary>
    /// With several ranks, start the gradients' sum during the backward of each mini-batch's last micro-batch, bucket by
    /// bucket as its layers finish (<see cref="AdamWOptimizer.GradientsFinalFrom"/>): the same sums, sooner. Null (the
    /// default): where the sum runs on the device beside the ops (NCCL on the Cuda backend's side stream), not in host
    /// memory (the Cpu backend's ranks would give a core of their own to it); true: in host memory too; false: never.
    /// </summary>
    public bool? OverlapGradientReduction { get; init; }

    /// <summary>
    /// Elements per collective of the gradients' sum over the ranks (<see cref="OR1.Native.Distributed.GradientBuckets"/>;
    /// default <see cref="AdamWOptimizer.BucketElements"/>, 16 MB of fp32): smaller buckets start sooner during the
    /// backward, larger ones pay each collective's fixed cost less often. A multiple of 64 (256-byte aligned buckets).
    /// </summary>
    public int GradientBucketElements { get; init; } = AdamWOptimizer.BucketElements;

    /// <summary>Where log p_old comes from: the trainer's forward (default, the recipe's) or the rollout engine.</summary>
    public OldLogProbSource OldLogProbs { get; init; } = OldLogProbSource.Recompute;

    /// <summary>The stage's response length limit, for the response-length clip ratio metric; null when unknown.</summary>
    public int? MaxResponseLength { get; init; }

    /// <summary>epsilon of (r - mean) / (std + epsilon).</summary>
    public double AdvantageEpsilon { get; init; } = 1e-6;

    /// <summary>Checks every value; the message names the field.</summary>
    public void Validate()
    {
        static void Require(bool ok, string field, object value, string rule)
        {
            if (!ok) throw new ArgumentException($"MagicOptions.{field} is {value}; {rule}", field);
        }
        Require(LearningRate >= 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "it must be a finite non-negative number");
        Require(MaxGradNorm > 0, nameof(MaxGradNorm), MaxGradNorm, "it must be positive");
        Require(ClipLow is >= 0 and < 1, nameof(ClipLow), ClipLow, "it must be in [0, 1)");
        Require(ClipHigh >= 0, nameof(ClipHigh), ClipHigh, "it must be non-negative");
        Require(Temperature > 0, nameof(Temperature), Temperature, "it must be positive");
        Require(MiniBatches >= 1, nameof(MiniBatches), MiniBatches, "it must be at least 1");
        Require(MicroBatchTokens >= 1, nameof(MicroBatchTokens), MicroBatchTokens, "it must be at least 1");
        Require(KlCoefficient >= 0, nameof(KlCoefficient), KlCoefficient, "it must be non-negative");
        Require(GradientBucketElements >= 64 && GradientBucketElements % 64 == 0, nameof(GradientBucketElements), GradientBucketElements, "it must be a positive multiple of 64");
        Require(EntropyControl.Min <= EntropyControl.Max, nameof(EntropyControl), EntropyControl, "Min must not exceed Max");
    }
}
