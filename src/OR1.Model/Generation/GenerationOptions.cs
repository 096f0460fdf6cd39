using OR1.Native;

namespace OR1.Model.Generation;

/// <summary>How to sample continuations.</summary>
/// <param name="MaxNewTokens">Stop a sample after this many generated tokens (it is then truncated).</param>
/// <param name="Sampling">Temperature, top-p, top-k.</param>
/// <param name="StopTokenIds">Token ids that end a sample (EOS); the stop token is kept in the output.</param>
/// <param name="SamplesPerPrompt">n samples per prompt (the GRPO group size).</param>
/// <param name="Seed">Seed of the counter-based sampler: the same seed and request give the same samples.</param>
/// <param name="CounterOffset">Selects the call's family of random streams: request r (prompt p, sample s, r = p *
/// SamplesPerPrompt + s) draws its token at position i from the stream (seed, r, i) of this family, whatever shares its
/// batch. Calls that share a seed and should not repeat each other's draws (evaluation slices, training steps) pass
/// different offsets; 0 is the seed's own family.</param>
/// <param name="PromptMaxNewTokens">Optional per-prompt limits (one per prompt, each in [1, MaxNewTokens]): the samples of
/// prompt p stop after PromptMaxNewTokens[p] tokens. Null: MaxNewTokens for every prompt.</param>
/// <param name="PromptStreams">Optional stream ids of the prompts (distinct, one per prompt): the samples of prompt p draw
/// as the samples of prompt PromptStreams[p] of a larger call would (request r = PromptStreams[p] * SamplesPerPrompt + s).
/// Data-parallel rollouts pass each prompt's index in the whole step's batch, so a rank that generates a share of the
/// prompts draws exactly the tokens one process generating them all would. Null: p.</param>
public sealed record GenerationOptions(
    int MaxNewTokens,
    SamplingOptions Sampling,
    IReadOnlyCollection<int> StopTokenIds,
    int SamplesPerPrompt = 1,
    ulong Seed = 0,
    ulong CounterOffset = 0,
    IReadOnlyList<int>? PromptMaxNewTokens = null,
    IReadOnlyList<int>? PromptStreams = null)
{
    /// <summary>The limit of prompt <paramref name="prompt"/>'s samples.</summary>
    public int MaxNewTokensOf(int prompt) => PromptMaxNewTokens?[prompt] ?? MaxNewTokens;

    /// <summary>The sampler seed of this call's stream family (<see cref="CounterOffset"/>).</summary>
    public ulong StreamSeed => CounterOffset == 0 ? Seed : CounterRng.Hash(Seed, CounterOffset, ulong.MaxValue);
}

/// <summary>How far a <see cref="Qwen2Generator.Generate"/> call is, reported after every decode step.</summary>
/// <param name="FinishedSamples">Samples complete (stopped or at the length limit).</param>
/// <param name="TotalSamples">Samples requested.</param>
/// <param name="GeneratedTokens">Tokens sampled so far, over all samples.</param>
/// <param name="Stats">Prefill and decode rates and the decode batch's occupancy so far.</param>
public readonly record struct GenerationProgress(int FinishedSamples, int TotalSamples, long GeneratedTokens, GenerationStats Stats = default);

/// <summary>One sampled continuation.</summary>
/// <param name="PromptIndex">Which prompt it continues.</param>
/// <param name="SampleIndex">Which of the prompt's n samples it is.</param>
/// <param name="Tokens">Generated token ids (the stop token included when one was produced).</param>
/// <param name="LogProbs">log softmax(logits / T) of each generated token under the sampling model, over the full
/// vocabulary also when top-k/top-p narrowed the draw (the trainer's support; on the Cpu backend the trainer's bits).</param>
/// <param name="Truncated">True when the sample hit MaxNewTokens without a stop token.</param>
/// <param name="TruncatedMass">Per generated token, the probability (under the full distribution its log-prob is of) of
/// the tokens top-k/top-p kept out of its draw; 0 without them. Null when not reported.</param>
public sealed record GeneratedSample(int PromptIndex, int SampleIndex, IReadOnlyList<int> Tokens, IReadOnlyList<float> LogProbs, bool Truncated,
    IReadOnlyList<float>? TruncatedMass = null);
