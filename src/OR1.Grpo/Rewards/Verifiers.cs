using OR1.Grpo.Rewards.Math;

namespace OR1.Grpo.Rewards;

/// <summary>The verifiers this build has, in dispatch order.</summary>
public static class Verifiers
{
    /// <summary>Math (and, once the sandbox exists, code) verifiers with their default settings.</summary>
    public static IReadOnlyList<IRewardFunction> Default() => [new MathReward()];
}
