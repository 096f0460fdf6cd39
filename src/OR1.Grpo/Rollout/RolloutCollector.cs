using System.Diagnostics;
using OR1.Grpo.Data;
using OR1.Grpo.Rewards;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;

namespace OR1.Grpo.Rollout;

/// <summary>
/// The responses of one rollout: what the trainer consumes (<see cref="Batch"/>, group g answering
/// <see cref="Examples"/>[g]) and what a person reads (per sequence the decoded text and the verifier's verdict),
/// with the time each phase took.
/// </summary>
public sealed record Rollouts(RolloutBatch Batch, IReadOnlyList<RlExample> Examples, IReadOnlyList<string> Texts,
    IReadOnlyList<RewardResult> Rewards, double GenerateSeconds, double RewardSeconds, GenerationStats Engine = default)
{
    /// <summary>Several rollouts as one, in order (e.g. the chunks of an evaluation).</summary>
    public static Rollouts Concat(IReadOnlyList<Rollouts> parts)
    {
        if (parts.Count == 1) return parts[0];
        var builder = new ResponseBatch.Builder();
        foreach (var part in parts)
        {
            var batch = part.Batch.Responses;
            for (int g = 0; g < batch.GroupCount; g++)
            {
                int first = batch.GroupStart(g);
                builder.BeginGroup(batch.Prompt(first));
                for (int s = first; s < first + batch.GroupSize(g); s++) builder.AddResponse(batch.Response(s));
            }
        }
        var rollouts = new RolloutBatch(builder.Build(), parts.SelectMany(p => p.Batch.Rewards).ToArray(), parts.SelectMany(p => p.Batch.Truncated).ToArray(),
            parts.SelectMany(p => p.Batch.SamplerLogProbs).ToArray(), parts.SelectMany(p => p.Batch.GroupNames).ToArray());
        return new Rollouts(rollouts, parts.SelectMany(p => p.Examples).ToArray(), parts.SelectMany(p => p.Texts).ToArray(),
            parts.SelectMany(p => p.Rewards).ToArray(), parts.Sum(p => p.GenerateSeconds), parts.Sum(p => p.RewardSeconds),
            parts.Select(p => p.Engine).Aggregate(GenerationStats.Add));
    }

    /// <summary>No responses (a rank that ran none of an evaluation's chunks).</summary>
    public static Rollouts Empty => new(new RolloutBatch(new ResponseBatch.Builder().Build(), [], []), [], [], [], 0, 0);

    /// <summary>The group (index into <see cref="Examples"/>) of every sequence.</summary>
    public int[] GroupOfSequence()
    {
        var batch = Batch.Responses;
        var group = new int[batch.SequenceCount];
        for (int g = 0; g < batch.GroupCount; g++) group.AsSpan(batch.GroupStart(g), batch.GroupSize(g)).Fill(g);
        return group;
    }
}

/// <summary>
/// Rollout (docs/RECIPE.md step 2-3): G samples per prompt through the KV-cache generator, decoded and scored.
/// Each prompt is tokenized once (the encoder caches by example id) and stored once per group.
/// Scoring runs after generation on all cores (the kernels are idle then), so it never competes with them.
/// </summary>
public sealed class RolloutCollector(Qwen2Generator generator, PromptEncoder encoder, RewardRouter rewards, IReadOnlySet<int> stopTokens)
{
    /// <summary>The encoder whose cache holds the prompts' tokens.</summary>
    public PromptEncoder Encoder => encoder;

    /// <summary>The most samples the generator decodes at once.</summary>
    public int MaxBatch => generator.MaxBatch;

    /// <summary>
    /// Samples and scores <paramref name="groupSize"/> responses to every example. <paramref name="counterOffset"/> is the
    /// sampler's first counter (see <see cref="GenerationOptions.CounterOffset"/>); <paramref name="promptStreams"/> the
    /// examples' stream ids (<see cref="GenerationOptions.PromptStreams"/>: their indices in a larger batch).
    /// </summary>
    public Rollouts Collect(IReadOnlyList<RlExample> examples, int groupSize, int maxNewTokens,
        SamplingOptions sampling, ulong seed, IProgress<GenerationProgress>? progress = null, ulong counterOffset = 0, IReadOnlyList<int>? promptStreams = null)
    {
        var prompts = examples.Select(e => (IReadOnlyList<int>)encoder.Encode(e)).ToArray();
        var timer = Stopwatch.StartNew();
        var generated = generator.Generate(prompts, new GenerationOptions(maxNewTokens, sampling, stopTokens, groupSize, seed, counterOffset, PromptStreams: promptStreams), progress);
        double generateSeconds = timer.Elapsed.TotalSeconds;

        // The generator returns samples ordered by prompt, then sample: one group per prompt.
        var builder = new ResponseBatch.Builder();
        int currentPrompt = -1;
        foreach (var g in generated)
        {
            if (g.PromptIndex != currentPrompt) builder.BeginGroup(encoder.Encode(examples[g.PromptIndex]));
            currentPrompt = g.PromptIndex;
            builder.AddResponse(g.Tokens.ToArray());
        }
        var batch = builder.Build();

        timer.Restart();
        var texts = new string[generated.Count];
        var results = new RewardResult[generated.Count];
        Parallel.For(0, generated.Count, i =>
        {
            var g = generated[i];
            texts[i] = encoder.Tokenizer.Decode(g.Tokens, skipSpecialTokens: true);
            results[i] = rewards.Score(texts[i], examples[g.PromptIndex].GroundTruth, g.Truncated);
        });
        double rewardSeconds = timer.Elapsed.TotalSeconds;

        var rollouts = new RolloutBatch(batch, results.Select(r => r.Score).ToArray(), generated.Select(g => g.Truncated).ToArray(),
            generated.Select(g => (IReadOnlyList<float>?)g.LogProbs).ToArray(), examples.Select(e => e.Id).ToArray());
        return new Rollouts(rollouts, examples, texts, results, generateSeconds, rewardSeconds, generator.LastStats);
    }
}
