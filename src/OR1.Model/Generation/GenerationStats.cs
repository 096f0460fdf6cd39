namespace OR1.Model.Generation;

/// <summary>
/// What a <see cref="Qwen2Generator.Generate"/> call has done so far: prefill and decode work, time and the decode
/// batch's occupancy. Occupancy is the decode rows over the slots (MaxBatch) per step; "while queued" counts only the
/// steps at which requests were still waiting, which is what continuous batching keeps full (the drain at the end,
/// when nothing is left to admit, necessarily runs emptier).
/// </summary>
/// <param name="PrefillTokens">Prompt tokens run through prefill (a prompt shared by several requests admitted together counts once).</param>
/// <param name="PrefillSeconds">Wall time of the prefills, their first-token sampling included.</param>
/// <param name="DecodeTokens">Tokens sampled by decode steps.</param>
/// <param name="DecodeSeconds">Wall time of the decode steps.</param>
/// <param name="DecodeSteps">Decode steps run.</param>
/// <param name="DecodeRows">Sum over decode steps of the rows that sampled (a row stopped within a run of several steps
/// idles until the run ends and is not counted).</param>
/// <param name="QueuedSteps">Decode steps run while requests were waiting.</param>
/// <param name="QueuedRows">Sum of the rows of those steps.</param>
/// <param name="Slots">The generator's MaxBatch.</param>
/// <param name="Prefills">Prefill waves run (one packed batch each; chunks of long sequences are counted apart).</param>
/// <param name="Preemptions">Running requests pre-empted for lack of cache pages (each prefilled again later).</param>
/// <param name="SampledTokens">Tokens sampled, by prefills and decode steps.</param>
/// <param name="TruncatedMassSum">Sum over the sampled tokens of the probability top-k/top-p cut from their draw; it comes
/// back with the log-probs (at the end of the call, or when their buffer fills), so it is complete in
/// <see cref="Qwen2Generator.LastStats"/>, not in every progress report.</param>
/// <param name="CachePages">Pages of the KV cache (its memory budget).</param>
/// <param name="CachePagesInUse">Pages held by running requests at the last report.</param>
/// <param name="PeakCachePagesInUse">The most pages held at once.</param>
/// <param name="DecodeGraphCaptures">Decode-step graphs captured (one per batch-size bucket met, with device graphs on).</param>
/// <param name="DecodeGraphReplays">Decode steps run by replaying a graph instead of launching their ops.</param>
/// <param name="DecodeRuns">Runs of decode steps, each ended by one wait for the device (<see cref="Qwen2Generator.DecodeStepsPerSync"/> steps at most).</param>
/// <param name="PrefillChunks">Chunks of sequences longer than the prefill budget run by decode steps (their tokens count
/// in <paramref name="PrefillTokens"/>; a step's time is shared between its chunk and decode rows by their counts).</param>
public readonly record struct GenerationStats(
    long PrefillTokens, double PrefillSeconds, long DecodeTokens, double DecodeSeconds, int DecodeSteps, long DecodeRows,
    int QueuedSteps, long QueuedRows, int Slots, int Prefills, int Preemptions = 0, long SampledTokens = 0, double TruncatedMassSum = 0,
    int CachePages = 0, int CachePagesInUse = 0, int PeakCachePagesInUse = 0, int DecodeGraphCaptures = 0, int DecodeGraphReplays = 0, int PrefillChunks = 0, int DecodeRuns = 0)
{
    /// <summary>The share of the KV cache's pages in use at the last report.</summary>
    public double CacheUse => CachePages > 0 ? (double)CachePagesInUse / CachePages : 0;

    /// <summary>The largest share of the KV cache's pages in use at once.</summary>
    public double PeakCacheUse => CachePages > 0 ? (double)PeakCachePagesInUse / CachePages : 0;

    /// <summary>
    /// Mean probability that top-k/top-p removed from the distribution a token was drawn from (0 without them): the share
    /// of the full-vocabulary policy, whose log-probs the engine returns, that the sampler never drew from.
    /// </summary>
    public double MeanTruncatedMass => SampledTokens > 0 ? TruncatedMassSum / SampledTokens : 0;

    /// <summary>Prompt tokens per second of prefill.</summary>
    public double PrefillTokensPerSecond => PrefillSeconds > 0 ? PrefillTokens / PrefillSeconds : 0;

    /// <summary>Sampled tokens per second of decode.</summary>
    public double DecodeTokensPerSecond => DecodeSeconds > 0 ? DecodeTokens / DecodeSeconds : 0;

    /// <summary>Mean decode rows over the slots, over every decode step.</summary>
    public double MeanOccupancy => DecodeSteps > 0 ? DecodeRows / ((double)DecodeSteps * Slots) : 0;

    /// <summary>Mean decode rows over the slots, over the steps at which requests were waiting (1 when there were none).</summary>
    public double MeanOccupancyWhileQueued => QueuedSteps > 0 ? QueuedRows / ((double)QueuedSteps * Slots) : 1;

    /// <summary>The work of two calls together (an evaluation's chunks); the slots of the larger.</summary>
    public static GenerationStats Add(GenerationStats a, GenerationStats b) => new(
        a.PrefillTokens + b.PrefillTokens, a.PrefillSeconds + b.PrefillSeconds, a.DecodeTokens + b.DecodeTokens, a.DecodeSeconds + b.DecodeSeconds,
        a.DecodeSteps + b.DecodeSteps, a.DecodeRows + b.DecodeRows, a.QueuedSteps + b.QueuedSteps, a.QueuedRows + b.QueuedRows,
        Math.Max(a.Slots, b.Slots), a.Prefills + b.Prefills, a.Preemptions + b.Preemptions, a.SampledTokens + b.SampledTokens,
        a.TruncatedMassSum + b.TruncatedMassSum, Math.Max(a.CachePages, b.CachePages), b.CachePagesInUse,
        Math.Max(a.PeakCachePagesInUse, b.PeakCachePagesInUse), a.DecodeGraphCaptures + b.DecodeGraphCaptures, a.DecodeGraphReplays + b.DecodeGraphReplays,
        a.PrefillChunks + b.PrefillChunks, a.DecodeRuns + b.DecodeRuns);
}
