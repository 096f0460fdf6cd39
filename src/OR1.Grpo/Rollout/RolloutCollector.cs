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
    IReadOnlyList<RewardResult> Rewards, double GenerateSeconds, double RewardSeconds)
{
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

    /// <summary>Samples and scores <paramref name="groupSize"/> responses to every example.</summary>
    public Rollouts Collect(IReadOnlyList<RlExample> examples, int groupSize, int maxNewTokens,
        SamplingOptions sampling, ulong seed, IProgress<int>? progress = null)
    {
        var prompts = examples.Select(e => (IReadOnlyList<int>)encoder.Encode(e)).ToArray();
        var timer = Stopwatch.StartNew();
        var generated = generator.Generate(prompts, new GenerationOptions(maxNewTokens, sampling, stopTokens, groupSize, seed), progress);
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
        return new Rollouts(rollouts, examples, texts, results, generateSeconds, rewardSeconds);
    }
}
