namespace OR1.Grpo.Training;

/// <summary>What one MAGIC step did (docs/RECIPE.md step 9); one JSON line of metrics.jsonl.</summary>
public sealed record StepMetrics
{
    public int Step { get; init; }
    public int Stage { get; init; }
    public bool Skipped { get; init; }
    public double RewardMean { get; init; }
    public int SolveNone { get; init; }
    public int SolveAll { get; init; }
    public int Partial { get; init; }
    public int Groups { get; init; }
    public int KeptGroups { get; init; }
    public double ResponseLengthMean { get; init; }
    public int ResponseLengthMax { get; init; }
    public double TruncationRatio { get; init; }
    /// <summary>e_k: mean -logp_old of the kept batch's sampled tokens.</summary>
    public double Entropy { get; init; }
    /// <summary>Mean full-vocabulary entropy H_t of the kept tokens (the quantity the bonus acts on).</summary>
    public double FullEntropy { get; init; }
    /// <summary>c_k used in this step's loss.</summary>
    public double EntropyCoefficient { get; init; }
    public bool EntropyEnabled { get; init; }
    public double PolicyLoss { get; init; }
    public double KlLoss { get; init; }
    public double ClipFraction { get; init; }
    /// <summary>Global gradient norm before clipping (mean over the step's optimizer steps).</summary>
    public double GradNorm { get; init; }
    public double LearningRate { get; init; }
    public int OptimizerSteps { get; init; }
    /// <summary>Response tokens generated in the step (all groups).</summary>
    public int GeneratedTokens { get; init; }
    /// <summary>Response tokens of the kept groups (what the update trained on).</summary>
    public int KeptTokens { get; init; }
    public double RolloutSeconds { get; init; }
    public double UpdateSeconds { get; init; }
    public double RolloutTokensPerSecond => RolloutSeconds > 0 ? GeneratedTokens / RolloutSeconds : 0;
    public double UpdateTokensPerSecond => UpdateSeconds > 0 ? KeptTokens / UpdateSeconds : 0;
}
