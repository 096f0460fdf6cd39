using OR1.Grpo.Data;
using OR1.Grpo.Rewards;
using OR1.Grpo.Training;
using OR1.Model.Generation;
using OR1.Native;

namespace OR1.Grpo.Rollout;

/// <summary>A scored response with the example it answers.</summary>
/// <param name="Example">The prompt's example.</param>
/// <param name="Sample">What the trainer consumes.</param>
/// <param name="Text">The decoded response.</param>
/// <param name="Reward">The verifier's verdict.</param>
public sealed record ScoredResponse(RlExample Example, RolloutSample Sample, string Text, RewardResult Reward);

/// <summary>
/// Rollout (docs/RECIPE.md step 2-3): G samples per prompt through the KV-cache generator, decoded and scored.
/// Scoring runs after generation on all cores (the kernels are idle then), so it never competes with them.
/// </summary>
public sealed class RolloutCollector(Qwen2Generator generator, PromptEncoder encoder, RewardRouter rewards, IReadOnlySet<int> stopTokens)
{
    /// <summary>Samples and scores <paramref name="groupSize"/> responses to every example.</summary>
    public IReadOnlyList<ScoredResponse> Collect(IReadOnlyList<RlExample> examples, int groupSize, int maxNewTokens,
        SamplingOptions sampling, ulong seed, IProgress<int>? progress = null)
    {
        var prompts = examples.Select(e => (IReadOnlyList<int>)encoder.Encode(e)).ToArray();
        var generated = generator.Generate(prompts, new GenerationOptions(maxNewTokens, sampling, stopTokens, groupSize, seed), progress);
        var results = new ScoredResponse[generated.Count];
        Parallel.For(0, generated.Count, i =>
        {
            var g = generated[i];
            var example = examples[g.PromptIndex];
            string text = encoder.Tokenizer.Decode(g.Tokens, skipSpecialTokens: true);
            var reward = rewards.Score(text, example.GroundTruth, g.Truncated);
            var sample = new RolloutSample(GroupId(example, g.PromptIndex), prompts[g.PromptIndex], g.Tokens, reward.Score, g.Truncated, g.LogProbs);
            results[i] = new ScoredResponse(example, sample, text, reward);
        });
        return results;
    }

    /// <summary>A group id unique within a batch even when the same example was drawn twice (the mix duplicates code rows).</summary>
    private static string GroupId(RlExample example, int promptIndex) => $"{promptIndex}:{example.Id}";
}
