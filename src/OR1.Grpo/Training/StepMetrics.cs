using System.Text.Json.Serialization;

namespace OR1.Grpo.Training;

/// <summary>
/// What one MAGIC step did (docs/RECIPE.md step 9); one JSON line of metrics.jsonl. Names follow verl's metrics where
/// there is one (pg_clipfrac_lower, ppo_kl, rollout_probs_diff, response_length/clip_ratio).
/// </summary>
public sealed record StepMetrics
{
    /// <summary>The step number: every record has its own, skipped steps included (see <see cref="Skipped"/>).</summary>
    public int Step { get; init; }
    public int Stage { get; init; }
    /// <summary>Updates made so far (steps that were not skipped), this one included.</summary>
    public int Updates { get; init; }
    /// <summary>No group had mixed rewards: nothing was trained, no optimizer step, no controller update.</summary>
    public bool Skipped { get; init; }

    /// <summary>Data-parallel ranks that took the step together (1 for a single process).</summary>
    public int WorldSize { get; init; } = 1;

    /// <summary>Bytes of optimizer state this rank holds: the Adam moments, and the fp32 master slice when it is sharded
    /// apart from the model (1/N of the model's with the sharded optimizer).</summary>
    public long OptimizerStateBytes { get; init; }
    public double RewardMean { get; init; }
    public int SolveNone { get; init; }
    public int SolveAll { get; init; }
    public int Partial { get; init; }
    public int Groups { get; init; }
    public int KeptGroups { get; init; }
    public double ResponseLengthMean { get; init; }
    public int ResponseLengthMax { get; init; }
    /// <summary>Responses that stopped at the length limit without EOS, over all responses.</summary>
    public double TruncationRatio { get; init; }
    /// <summary>Responses whose length reached the stage's maximum (verl's response_length/clip_ratio); 0 when the maximum is unknown.</summary>
    public double ResponseLengthClipRatio { get; init; }
    /// <summary>e_k: mean -logp_old of the kept batch's sampled tokens.</summary>
    public double Entropy { get; init; }
    /// <summary>Mean full-vocabulary entropy H_t of the kept tokens (the quantity the bonus acts on).</summary>
    public double FullEntropy { get; init; }
    /// <summary>c_k used in this step's loss.</summary>
    public double EntropyCoefficient { get; init; }
    public bool EntropyEnabled { get; init; }
    public double PolicyLoss { get; init; }
    public double KlLoss { get; init; }
    /// <summary>Weighted share of tokens whose ratio was clipped (ClipFractionLow + ClipFractionHigh).</summary>
    public double ClipFraction { get; init; }
    /// <summary>Clipped at 1 - eps_low (negative advantages; verl's pg_clipfrac_lower).</summary>
    public double ClipFractionLow { get; init; }
    /// <summary>Clipped at 1 + eps_high (positive advantages).</summary>
    public double ClipFractionHigh { get; init; }
    /// <summary>Approximate KL of the new policy from the old, mean(logp_old - logp) (verl's ppo_kl).</summary>
    public double PpoKl { get; init; }
    /// <summary>Global gradient norm before clipping (mean over the step's optimizer steps).</summary>
    public double GradNorm { get; init; }
    public double LearningRate { get; init; }
    public int OptimizerSteps { get; init; }
    /// <summary>Where log p_old came from ("recompute" or "sampler").</summary>
    public string OldLogprobs { get; init; } = "recompute";
    /// <summary>
    /// Mean and max of |logp_sampler - logp_trainer| over the kept tokens whose rollout engine reported log-probs
    /// (verl's rollout_probs_diff): the KV-cache decode kernels against the training forward; 0 tokens: none reported.
    /// </summary>
    public double SamplerLogProbDiffMean { get; init; }
    public double SamplerLogProbDiffMax { get; init; }
    public int SamplerLogProbDiffTokens { get; init; }
    /// <summary>Response tokens generated in the step (all groups).</summary>
    public int GeneratedTokens { get; init; }
    /// <summary>Response tokens of the kept groups (what the update trained on).</summary>
    public int KeptTokens { get; init; }
    /// <summary>Prompt + response tokens of the kept groups (what each forward pass ran over).</summary>
    public int KeptSequenceTokens { get; init; }
    /// <summary>
    /// The log-prob's tiling for the step's largest micro-batch (<see cref="OR1.Native.IBackend.PlanLogProb"/>): rows and
    /// vocabulary columns per logit tile, chosen from the device's free memory, and its peak scratch in MiB (the
    /// [tokens x vocab] logits are never formed). 0 for a skipped step.
    /// </summary>
    public int LogProbRowBlock { get; init; }
    public int LogProbVocabChunk { get; init; }
    public double LogProbScratchMib { get; init; }
    public double GenerateSeconds { get; init; }
    /// <summary>The rollout engine's prompt tokens per second of prefill and sampled tokens per second of decode.</summary>
    public double PrefillTokensPerSecond { get; init; }
    public double DecodeTokensPerSecond { get; init; }
    /// <summary>The decode batch's mean occupancy (rows over slots) over the rollout, and while requests waited.</summary>
    public double RolloutOccupancy { get; init; }
    public double RolloutOccupancyWhileQueued { get; init; }
    /// <summary>Requests pre-empted for lack of KV-cache pages (and recomputed).</summary>
    public int RolloutPreemptions { get; init; }
    /// <summary>
    /// Mean over the rollout's tokens of the probability top-k/top-p cut from their draw (0 without them, the recipe's
    /// setting): the share of the policy whose log-probs train that the sampler never drew from (TRL's truncation bias).
    /// </summary>
    public double RolloutTruncatedMass { get; init; }
    public double RewardSeconds { get; init; }
    /// <summary>The forward pass that computes log p_old before the first update (0 when none was needed).</summary>
    public double OldLogProbSeconds { get; init; }
    public double UpdateSeconds { get; init; }
    public double RolloutSeconds => GenerateSeconds + RewardSeconds;
    public double GenerateTokensPerSecond => GenerateSeconds > 0 ? GeneratedTokens / GenerateSeconds : 0;
    public double RewardTokensPerSecond => RewardSeconds > 0 ? GeneratedTokens / RewardSeconds : 0;
    public double OldLogProbTokensPerSecond => OldLogProbSeconds > 0 ? KeptSequenceTokens / OldLogProbSeconds : 0;
    public double UpdateTokensPerSecond => UpdateSeconds > 0 ? KeptTokens / UpdateSeconds : 0;

    /// <summary>The same numbers per optimizer step (for tests and detailed logs; not in metrics.jsonl).</summary>
    [JsonIgnore]
    public IReadOnlyList<MiniBatchMetrics> MiniBatches { get; init; } = [];
}

/// <summary>The loss terms of one mini-batch (one optimizer step), each a weighted mean over its kept tokens.</summary>
public sealed record MiniBatchMetrics(double PolicyLoss, double KlLoss, double ClipFraction, double ClipFractionLow, double ClipFractionHigh,
    double PpoKl, double GradNorm, int Tokens);
