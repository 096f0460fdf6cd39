namespace OR1.Grpo.Rewards.Math;

/// <summary>Limits of the math verifier. The defaults fit RL training: 1 s per answer, inputs capped.</summary>
public sealed record MathRewardOptions
{
    /// <summary>The defaults.</summary>
    public static MathRewardOptions Default { get; } = new();

    /// <summary>Hard wall-clock limit for scoring one answer (extraction plus every comparison). Default 1 s.</summary>
    public TimeSpan TimeLimit { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Only the last this many characters of the answer text are searched for an answer. Default 10,000.</summary>
    public int MaxAnswerChars { get; init; } = 10_000;

    /// <summary>
    /// A number literal with more digits than this is never parsed into a number (it can still match as a
    /// string). Default 1,000.
    /// </summary>
    public int MaxNumberDigits { get; init; } = 1_000;
}
