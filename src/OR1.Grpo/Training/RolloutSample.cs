namespace OR1.Grpo.Training;

/// <summary>
/// One sampled response with its reward: the unit a MAGIC step consumes, whether it came from our
/// generator or from elsewhere (vLLM rollouts fed to `or1 step`).
/// </summary>
/// <param name="GroupId">Responses to the same prompt share a group id (the GRPO group).</param>
/// <param name="PromptTokens">The templated prompt.</param>
/// <param name="ResponseTokens">The response, including its EOS when one was produced.</param>
/// <param name="Reward">The verifier's reward.</param>
/// <param name="Truncated">True when the response hit the length limit without EOS.</param>
/// <param name="OldLogProbs">log p_old of each response token under the behaviour policy; null: taken from the current policy before the update.</param>
public sealed record RolloutSample(
    string GroupId,
    IReadOnlyList<int> PromptTokens,
    IReadOnlyList<int> ResponseTokens,
    double Reward,
    bool Truncated,
    IReadOnlyList<float>? OldLogProbs = null);
