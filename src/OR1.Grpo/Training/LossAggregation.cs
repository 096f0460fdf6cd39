namespace OR1.Grpo.Training;

/// <summary>How per-token losses are averaged into one number.</summary>
public enum LossAggregation
{
    /// <summary>The paper's token-level mean: every response token of the kept mini-batch weighs 1 / T_k.</summary>
    TokenMean,
    /// <summary>
    /// verl's behaviour: a token mean inside each micro-batch, micro-batches weighted by their share of the
    /// mini-batch's sequences (so long micro-batches count less per token).
    /// </summary>
    VerlCompat,
}

/// <summary>Per-token loss weights for one micro-batch (the tokenWeights of the policy-loss op).</summary>
public static class LossWeights
{
    /// <summary>
    /// Weight of each response token of a micro-batch. <paramref name="microBatchTokens"/> and
    /// <paramref name="microBatchSequences"/> are the micro-batch's response tokens and sequences;
    /// the mini-batch totals are over all micro-batches of one optimizer step.
    /// </summary>
    public static double TokenWeight(LossAggregation aggregation, int microBatchTokens, int microBatchSequences, int miniBatchTokens, int miniBatchSequences)
    {
        if (miniBatchTokens <= 0 || microBatchTokens <= 0) return 0;
        return aggregation switch
        {
            LossAggregation.TokenMean => 1.0 / miniBatchTokens,
            LossAggregation.VerlCompat => 1.0 / microBatchTokens * microBatchSequences / miniBatchSequences,
            _ => throw new ArgumentOutOfRangeException(nameof(aggregation), aggregation, "unknown loss aggregation"),
        };
    }
}
