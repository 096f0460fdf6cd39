namespace OR1.Grpo.Rewards;

/// <summary>A reward in {0, 1} with a short reason (for logs, `or1 reward` and debugging a verifier).</summary>
public sealed record RewardResult(double Score, string Reason)
{
    public static RewardResult Correct(string reason = "correct") => new(1, reason);

    public static RewardResult Wrong(string reason) => new(0, reason);
}
