using OR1.Grpo.Training;
using OR1.Model;

namespace OR1.Runner.Sample;

/// <summary>
/// Sizes and schedule of the bundled sample. The defaults are tuned so that the whole run (warm-up,
/// two evaluations, two MAGIC stages) fits 10 minutes on a 2-core machine; <see cref="Quick"/> is the
/// smoke-test version (under a minute).
/// </summary>
public sealed record SampleSettings
{
    /// <summary>The policy: about 90k parameters, the size docs/SAMPLE-NOTES.md found to learn in time on 2 cores.</summary>
    public static Qwen2Config ModelConfig => new()
    {
        HiddenSize = 64,
        IntermediateSize = 192,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        RmsNormEps = 1e-6,
        RopeTheta = 10000,
        VocabSize = SampleTokenizerFiles.VocabSize,
        MaxPositionEmbeddings = 256,
        TieWordEmbeddings = true,
        BosTokenId = SampleTokenizerFiles.BeginOfSentenceId,
        EosTokenIds = [SampleTokenizerFiles.EndOfSentenceId],
    };

    public int TrainProblemsPerLevel { get; init; } = 4000;
    public int HeldOutProblemsPerLevel { get; init; } = 64;
    public int EvalSamples { get; init; } = 8;
    public int EvalMaxNewTokens { get; init; } = 112;

    public int WarmupSteps { get; init; } = 1000;
    public int WarmupBatch { get; init; } = 64;
    public double WarmupPeakLr { get; init; } = 1e-2;
    public double WarmupFinalLr { get; init; } = 1e-3;
    /// <summary>
    /// Mix of levels in the warm-up batches. Equal weights: a warm-up biased to the easiest level left the hard
    /// levels near 0% and rejection sampling then dropped nearly all their groups (docs/SAMPLE-NOTES.md saw the same).
    /// </summary>
    public IReadOnlyList<double> WarmupLevelWeights { get; init; } = [0.25, 0.25, 0.25, 0.25];

    /// <summary>The MAGIC schedule: two stages with growing response length, on all levels.</summary>
    public IReadOnlyList<StageConfig> Stages { get; init; } =
    [
        new StageConfig(Steps: 900, MaxResponseLength: 64, PromptsPerStep: 32, PromptsPerMiniBatch: 32, GroupSize: 8),
        new StageConfig(Steps: 900, MaxResponseLength: 112, PromptsPerStep: 32, PromptsPerMiniBatch: 32, GroupSize: 8),
    ];
    public double LearningRate { get; init; } = 4e-4;

    /// <summary>
    /// The recipe's entropy target (0.2) is far above this task's natural per-token entropy (0.02-0.05:
    /// most tokens are format or copied digits; docs/SAMPLE-NOTES.md), where the controller would saturate
    /// and act as a constant bonus. 0.05 sits just above it: the bonus switches on when the policy starts
    /// to collapse and off while it still explores.
    /// </summary>
    public double EntropyTarget { get; init; } = 0.05;
    public double EntropyDelta { get; init; } = 2e-4;
    public double EntropyCoefMax { get; init; } = 5e-3;

    /// <summary>The smoke-test run: the same pipeline at toy sizes.</summary>
    public static SampleSettings Quick => new()
    {
        TrainProblemsPerLevel = 300,
        HeldOutProblemsPerLevel = 8,
        EvalSamples = 4,
        EvalMaxNewTokens = 64,
        WarmupSteps = 40,
        WarmupBatch = 32,
        Stages =
        [
            new StageConfig(Steps: 3, MaxResponseLength: 48, PromptsPerStep: 8, PromptsPerMiniBatch: 8, GroupSize: 4),
            new StageConfig(Steps: 3, MaxResponseLength: 64, PromptsPerStep: 8, PromptsPerMiniBatch: 4, GroupSize: 4),
        ],
    };
}
