using OR1.Model;

namespace OR1.Grpo.Training;

/// <summary>
/// Scored responses in groups, as a MAGIC step consumes them: the packed <see cref="ResponseBatch"/> (each prompt
/// once per group, integer group spans) with, per sequence, the reward, whether the response hit the length limit,
/// and the rollout engine's log-probs of its tokens when it reported them.
/// </summary>
public sealed class RolloutBatch
{
    /// <param name="responses">The sequences, grouped.</param>
    /// <param name="rewards">Reward of each sequence.</param>
    /// <param name="truncated">Whether each response stopped at the length limit without EOS.</param>
    /// <param name="samplerLogProbs">Per sequence, the rollout engine's log p of each response token, or null; null for none at all.</param>
    /// <param name="groupNames">A name per group for messages (the example id, the "group" of a rollouts file); null: "group 0", ...</param>
    public RolloutBatch(ResponseBatch responses, IReadOnlyList<double> rewards, IReadOnlyList<bool> truncated,
        IReadOnlyList<IReadOnlyList<float>?>? samplerLogProbs = null, IReadOnlyList<string>? groupNames = null)
    {
        ArgumentNullException.ThrowIfNull(responses);
        int n = responses.SequenceCount;
        if (rewards.Count != n) throw new ArgumentException($"{rewards.Count} rewards for {n} sequences", nameof(rewards));
        if (truncated.Count != n) throw new ArgumentException($"{truncated.Count} truncation flags for {n} sequences", nameof(truncated));
        if (samplerLogProbs is not null && samplerLogProbs.Count != n)
            throw new ArgumentException($"{samplerLogProbs.Count} sampler log-prob lists for {n} sequences", nameof(samplerLogProbs));
        if (groupNames is not null && groupNames.Count != responses.GroupCount)
            throw new ArgumentException($"{groupNames.Count} group names for {responses.GroupCount} groups", nameof(groupNames));
        Responses = responses;
        Rewards = rewards;
        Truncated = truncated;
        SamplerLogProbs = samplerLogProbs ?? new IReadOnlyList<float>?[n];
        GroupNames = groupNames ?? Enumerable.Range(0, responses.GroupCount).Select(g => $"group {g}").ToArray();
    }

    public ResponseBatch Responses { get; }
    public IReadOnlyList<double> Rewards { get; }
    public IReadOnlyList<bool> Truncated { get; }
    public IReadOnlyList<IReadOnlyList<float>?> SamplerLogProbs { get; }
    public IReadOnlyList<string> GroupNames { get; }

    /// <summary>The rewards of <paramref name="group"/>'s sequences, in order.</summary>
    public double[] GroupRewards(int group)
    {
        int first = Responses.GroupStart(group);
        var rewards = new double[Responses.GroupSize(group)];
        for (int i = 0; i < rewards.Length; i++) rewards[i] = Rewards[first + i];
        return rewards;
    }

    /// <summary>
    /// Groups <paramref name="samples"/> by <see cref="RolloutSample.GroupId"/> (groups in order of first appearance,
    /// samples in input order). The samples of a group must share one prompt.
    /// </summary>
    public static RolloutBatch FromSamples(IReadOnlyList<RolloutSample> samples)
    {
        ArgumentNullException.ThrowIfNull(samples);
        var order = new List<string>();
        var members = new Dictionary<string, List<RolloutSample>>(StringComparer.Ordinal);
        foreach (var sample in samples)
        {
            if (!members.TryGetValue(sample.GroupId, out var list))
            {
                members[sample.GroupId] = list = [];
                order.Add(sample.GroupId);
            }
            list.Add(sample);
        }
        var builder = new ResponseBatch.Builder();
        var rewards = new List<double>(samples.Count);
        var truncated = new List<bool>(samples.Count);
        var logProbs = new List<IReadOnlyList<float>?>(samples.Count);
        foreach (string id in order)
        {
            var group = members[id];
            var prompt = group[0].PromptTokens.ToArray();
            if (prompt.Length == 0) throw new ArgumentException($"group '{id}': a sample has an empty prompt");
            builder.BeginGroup(prompt);
            foreach (var sample in group)
            {
                if (!sample.PromptTokens.SequenceEqual(prompt)) throw new ArgumentException($"group '{id}': its samples have different prompts (a group is the responses to one prompt)");
                builder.AddResponse(sample.ResponseTokens.ToArray());
                rewards.Add(sample.Reward);
                truncated.Add(sample.Truncated);
                logProbs.Add(sample.OldLogProbs);
            }
        }
        return new RolloutBatch(builder.Build(), rewards, truncated, logProbs, order);
    }
}
