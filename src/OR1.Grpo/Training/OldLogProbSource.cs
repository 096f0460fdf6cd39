namespace OR1.Grpo.Training;

/// <summary>
/// Where log p_old of the clipped ratio rho = exp(logp - logp_old) comes from (config <c>old_logprobs</c>, CLI
/// <c>--old-logprobs</c>).
/// </summary>
public enum OldLogProbSource
{
    /// <summary>
    /// The trainer's own forward pass, detached (docs/RECIPE.md step 3, verl's default): with one mini-batch, the very
    /// forward that trains (rho = 1 to the bit); with several, one forward over the whole batch before the first update.
    /// The rollout engine's log-probs, when given, are only compared with these (the sampler-trainer disagreement metrics).
    /// </summary>
    Recompute,

    /// <summary>The rollout engine's log-probs of the sampled tokens, as given with each rollout (they are required).</summary>
    Sampler,
}
