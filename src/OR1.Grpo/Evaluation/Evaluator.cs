using OR1.Grpo.Data;
using OR1.Grpo.Rollout;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;

namespace OR1.Grpo.Evaluation;

/// <summary>How far an evaluation is.</summary>
/// <param name="FinishedSamples">Samples generated so far.</param>
/// <param name="TotalSamples">Problems x K.</param>
/// <param name="GeneratedTokens">Tokens sampled so far.</param>
/// <param name="ScoredProblems">Problems whose K samples are scored.</param>
/// <param name="RunningAvgAtK">avg@K over the scored problems (0 before the first).</param>
public readonly record struct EvalProgress(int FinishedSamples, int TotalSamples, long GeneratedTokens, int ScoredProblems, double RunningAvgAtK);

/// <summary>
/// Avg@K evaluation (docs/RECIPE.md "Evaluation"): K samples per problem at a temperature and top-p, scored by the
/// same verifiers as training, reported per data_source. Problems go through in chunks of as many as the generator
/// decodes at once, each scored when it is done, so a long evaluation reports its running avg@K; each chunk draws
/// the sampler counters one call over all problems would have drawn for it.
/// </summary>
public static class Evaluator
{
    public static (IReadOnlyList<EvalScore> Scores, Rollouts Responses) Run(RolloutCollector collector,
        IReadOnlyList<RlExample> examples, int k, SamplingOptions sampling, int maxNewTokens, ulong seed, IProgress<EvalProgress>? progress = null)
    {
        if (k < 1) throw new ArgumentException($"k is {k}; it must be at least 1", nameof(k));
        int problemsPerChunk = Math.Max(1, collector.MaxBatch / k);
        var parts = new List<Rollouts>();
        var problems = new List<(string, IReadOnlyList<double>)>(examples.Count);
        int samplesBefore = 0;
        long tokensBefore = 0;
        ulong counter = 0;
        double solvedFraction = 0;
        for (int start = 0; start < examples.Count; start += problemsPerChunk)
        {
            var slice = examples.Skip(start).Take(problemsPerChunk).ToArray();
            int scored = problems.Count;
            double running = scored == 0 ? 0 : solvedFraction / scored;
            var generation = progress is null ? null : new SynchronousProgress<GenerationProgress>(g =>
                progress.Report(new EvalProgress(samplesBefore + g.FinishedSamples, examples.Count * k, tokensBefore + g.GeneratedTokens, scored, running)));
            var part = collector.Collect(slice, k, maxNewTokens, sampling, seed, generation, counter);
            counter += (ulong)((slice.Length * k + collector.MaxBatch - 1) / collector.MaxBatch) * ((ulong)maxNewTokens + 1);
            parts.Add(part);
            for (int p = 0; p < slice.Length; p++)
            {
                var rewards = part.Batch.GroupRewards(p);
                problems.Add((slice[p].DataSource, rewards));
                solvedFraction += rewards.Count(r => r >= 1) / (double)rewards.Length;
            }
            samplesBefore += slice.Length * k;
            tokensBefore += part.Batch.Responses.ResponseTokenCount;
            progress?.Report(new EvalProgress(samplesBefore, examples.Count * k, tokensBefore, problems.Count, solvedFraction / problems.Count));
        }
        return (AvgAtK.Score(problems), Rollouts.Concat(parts));
    }
}
