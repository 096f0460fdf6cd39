using OR1.Model;
using OR1.Model.Planning;
using OR1.Native;

namespace OR1.Grpo.Training;

/// <summary>
/// The memory planner applied to a training run before anything is allocated: a run whose longest sequence cannot fit
/// even alone fails with the numbers and what would make it fit, <c>micro_batch_tokens: auto</c> becomes the planner's
/// budget, and a plan that fits only with a smaller cache or micro-batch is reported.
/// </summary>
public static class TrainingMemory
{
    /// <summary>The micro-batch when the backend cannot say how much memory it has and the config asks for auto.</summary>
    public const int FallbackMicroBatchTokens = 8192;

    /// <summary>The planner's input for a run: its longest sequence, rollout batch and cache on the backend's free memory.</summary>
    public static MemoryPlanInput Input(TrainingConfig config, Qwen2Config model, Precision precision, long deviceBytes, bool gpu, int shardedRanks = 1) => new()
    {
        Ranks = shardedRanks,
        Config = model,
        Precision = precision,
        Recompute = config.Recompute,
        Context = config.MaxPromptLength + config.Stages.Max(s => s.MaxResponseLength),
        Samples = Math.Max(1, Math.Min(config.RolloutBatch, config.Stages.Max(s => s.PromptsPerStep * s.GroupSize))),
        DeviceBytes = deviceBytes,
        Gpu = gpu,
        MicroBatchTokens = config.MicroBatchTokens == TokensOrAutoConverter.Auto ? null : config.MicroBatchTokens,
        KvCacheBytes = config.KvCacheMemoryBytes,
    };

    /// <summary>
    /// Checks the run against <paramref name="backend"/>'s free memory and resolves <c>micro_batch_tokens: auto</c>.
    /// Throws <see cref="TrainingConfigException"/> when the longest sequence cannot fit even alone.
    /// </summary>
    /// <remarks>With <paramref name="shardedRanks"/> above 1 the optimizer state counted is this rank's slice (ZeRO-1).</remarks>
    public static TrainingConfig Apply(TrainingConfig config, Qwen2Config model, Precision precision, IBackend backend, TextWriter log, int shardedRanks = 1)
    {
        bool auto = config.MicroBatchTokens == TokensOrAutoConverter.Auto;
        if (backend.FreeMemoryBytes is not { } free || free <= 0)
        {
            if (!auto) return config;
            log.WriteLine($"micro_batch_tokens: auto -> {FallbackMicroBatchTokens} (the {backend.Kind} backend does not report its free memory)");
            return config with { MicroBatchTokens = FallbackMicroBatchTokens };
        }
        var plan = MemoryPlanner.Plan(Input(config, model, precision, free, backend.Kind == BackendKind.Cuda, shardedRanks));
        if (plan.MinimumBytes > plan.DeviceBytes)
            throw new TrainingConfigException("the config", $"the longest sequence ({plan.Input.Context:N0} tokens: max_prompt_length + max_response_length) " +
                                                            $"does not fit on the {backend.Kind} device: {plan.Advice}");
        if (auto)
        {
            log.WriteLine($"micro_batch_tokens: auto -> {plan.MicroBatchTokens:N0} ({MemoryPlan.Gb(plan.ActivationsBytes)} of activations; " +
                          $"{MemoryPlan.Gb(plan.TotalBytes)} planned of {MemoryPlan.Gb(plan.DeviceBytes)} free)");
            config = config with { MicroBatchTokens = plan.MicroBatchTokens };
        }
        if (!plan.Fits) log.WriteLine($"warning: memory plan: {plan.Advice}");
        return config;
    }
}
