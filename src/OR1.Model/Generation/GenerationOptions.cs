using OR1.Native;

namespace OR1.Model.Generation;

/// <summary>How to sample continuations.</summary>
/// <param name="MaxNewTokens">Stop a sample after this many generated tokens (it is then truncated).</param>
/// <param name="Sampling">Temperature, top-p, top-k.</param>
/// <param name="StopTokenIds">Token ids that end a sample (EOS); the stop token is kept in the output.</param>
/// <param name="SamplesPerPrompt">n samples per prompt (the GRPO group size).</param>
/// <param name="Seed">Seed of the counter-based sampler: the same seed and request give the same samples.</param>
/// <param name="CounterOffset">The first sampler counter this call draws from. A caller that splits one generation into
/// several calls of at most the generator's batch gives call c the offset c * (MaxNewTokens + 1), which is what one
/// call over everything would have used for that chunk: the draws then neither repeat nor change.</param>
public sealed record GenerationOptions(
    int MaxNewTokens,
    SamplingOptions Sampling,
    IReadOnlyCollection<int> StopTokenIds,
    int SamplesPerPrompt = 1,
    ulong Seed = 0,
    ulong CounterOffset = 0)
{
    /// <summary>The counters one chunk of up to the generator's batch consumes.</summary>
    public ulong CountersPerChunk => (ulong)MaxNewTokens + 1;
}

/// <summary>How far a <see cref="Qwen2Generator.Generate"/> call is, reported after every decode step.</summary>
/// <param name="FinishedSamples">Samples complete (stopped or at the length limit).</param>
/// <param name="TotalSamples">Samples requested.</param>
/// <param name="GeneratedTokens">Tokens sampled so far, over all samples.</param>
public readonly record struct GenerationProgress(int FinishedSamples, int TotalSamples, long GeneratedTokens);

/// <summary>One sampled continuation.</summary>
/// <param name="PromptIndex">Which prompt it continues.</param>
/// <param name="SampleIndex">Which of the prompt's n samples it is.</param>
/// <param name="Tokens">Generated token ids (the stop token included when one was produced).</param>
/// <param name="LogProbs">log softmax(logits / T) of each generated token under the sampling model.</param>
/// <param name="Truncated">True when the sample hit MaxNewTokens without a stop token.</param>
public sealed record GeneratedSample(int PromptIndex, int SampleIndex, IReadOnlyList<int> Tokens, IReadOnlyList<float> LogProbs, bool Truncated);
