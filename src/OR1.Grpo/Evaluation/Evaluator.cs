using OR1.Grpo.Data;
using OR1.Grpo.Rollout;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;
using OR1.Native.Distributed;

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
/// <para>Data parallel (a <c>world</c> of N ranks, all calling together): chunk c runs on rank c mod N, and the
/// ranks then add up every problem's sample rewards, so every rank returns the scores one process would; the returned
/// responses are this rank's chunks only.</para>
/// </summary>
public static class Evaluator
{
    public static (IReadOnlyList<EvalScore> Scores, Rollouts Responses) Run(RolloutCollector collector,
        IReadOnlyList<RlExample> examples, int k, SamplingOptions sampling, int maxNewTokens, ulong seed, IProgress<EvalProgress>? progress = null,
        ICollectives? world = null)
    {
        world ??= SingleProcess.Instance;
        if (k < 1) throw new ArgumentException($"k is {k}; it must be at least 1", nameof(k));
        int problemsPerChunk = Math.Max(1, collector.MaxBatch / k);
        var parts = new List<Rollouts>();
        var problems = new List<(string, IReadOnlyList<double>)>(examples.Count);
        int samplesBefore = 0;
        long tokensBefore = 0;
        ulong counter = 0;
        double solvedFraction = 0;
        // Every problem's K rewards, filled by the rank that ran its chunk and summed over the ranks at the end.
        var allRewards = new double[examples.Count * k];
        for (int start = 0, chunk = 0; start < examples.Count; start += problemsPerChunk, chunk++)
        {
            var slice = examples.Skip(start).Take(problemsPerChunk).ToArray();
            ulong chunkCounter = counter;
            counter += (ulong)((slice.Length * k + collector.MaxBatch - 1) / collector.MaxBatch) * ((ulong)maxNewTokens + 1);
            if (chunk % world.WorldSize != world.Rank) continue;
            int scored = problems.Count;
            double running = scored == 0 ? 0 : solvedFraction / scored;
            var generation = progress is null ? null : new SynchronousProgress<GenerationProgress>(g =>
                progress.Report(new EvalProgress(samplesBefore + g.FinishedSamples, examples.Count * k, tokensBefore + g.GeneratedTokens, scored, running)));
            var part = collector.Collect(slice, k, maxNewTokens, sampling, seed, generation, chunkCounter);
            parts.Add(part);
            for (int p = 0; p < slice.Length; p++)
            {
                var rewards = part.Batch.GroupRewards(p);
                rewards.CopyTo(allRewards, (start + p) * k);
                problems.Add((slice[p].DataSource, rewards));
                solvedFraction += rewards.Count(r => r >= 1) / (double)rewards.Length;
            }
            samplesBefore += slice.Length * k;
            tokensBefore += part.Batch.Responses.ResponseTokenCount;
            progress?.Report(new EvalProgress(samplesBefore, examples.Count * k, tokensBefore, problems.Count, solvedFraction / problems.Count));
        }
        if (world.WorldSize == 1) return (AvgAtK.Score(problems), Rollouts.Concat(parts));
        world.AllReduceSum(allRewards);
        var every = examples.Select((e, i) => (e.DataSource, (IReadOnlyList<double>)allRewards.AsSpan(i * k, k).ToArray())).ToArray();
        return (AvgAtK.Score(every), parts.Count > 0 ? Rollouts.Concat(parts) : Rollouts.Empty);
    }
}
