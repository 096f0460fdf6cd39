using OR1.Grpo.Data;
using OR1.Grpo.Rollout;
using OR1.Native;

namespace OR1.Grpo.Evaluation;

/// <summary>
/// Avg@K evaluation (docs/RECIPE.md "Evaluation"): K samples per problem at a temperature and top-p, scored by the
/// same verifiers as training, reported per data_source.
/// </summary>
public static class Evaluator
{
    public static (IReadOnlyList<EvalScore> Scores, Rollouts Responses) Run(RolloutCollector collector,
        IReadOnlyList<RlExample> examples, int k, SamplingOptions sampling, int maxNewTokens, ulong seed, IProgress<int>? progress = null)
    {
        if (k < 1) throw new ArgumentException($"k is {k}; it must be at least 1", nameof(k));
        var responses = collector.Collect(examples, k, maxNewTokens, sampling, seed, progress);
        var problems = new List<(string, IReadOnlyList<double>)>(examples.Count);
        for (int p = 0; p < examples.Count; p++) problems.Add((examples[p].DataSource, responses.Batch.GroupRewards(p)));
        return (AvgAtK.Score(problems), responses);
    }
}
