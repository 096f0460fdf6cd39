namespace OR1.Grpo.Training;

/// <summary>
/// One sampled response with its reward, as it arrives from elsewhere (a line of the rollouts file of `or1 step`,
/// a test); <see cref="RolloutBatch.FromSamples"/> groups such samples into what a MAGIC step consumes.
/// </summary>
/// <param name="GroupId">Responses to the same prompt share a group id (the GRPO group).</param>
/// <param name="PromptTokens">The templated prompt.</param>
/// <param name="ResponseTokens">The response, including its EOS when one was produced.</param>
/// <param name="Reward">The verifier's reward.</param>
/// <param name="Truncated">True when the response hit the length limit without EOS.</param>
/// <param name="OldLogProbs">The rollout engine's log p of each response token, or null (used as log p_old with
/// <see cref="OldLogProbSource.Sampler"/>; otherwise only compared with the trainer's own).</param>
public sealed record RolloutSample(
    string GroupId,
    IReadOnlyList<int> PromptTokens,
    IReadOnlyList<int> ResponseTokens,
    double Reward,
    bool Truncated,
    IReadOnlyList<float>? OldLogProbs = null);
