namespace OR1.Grpo.Evaluation;

/// <summary>Evaluation scores of one data source (or "all").</summary>
/// <param name="DataSource">The data_source, or "all".</param>
/// <param name="Problems">Problems evaluated.</param>
/// <param name="K">Samples per problem.</param>
/// <param name="AvgAtK">Mean over problems of the fraction of K samples that are correct (Skywork-OR1's main metric).</param>
/// <param name="PassAt1">Fraction of problems whose first sample is correct.</param>
/// <param name="PassAtK">Fraction of problems with at least one correct sample among K.</param>
public sealed record EvalScore(string DataSource, int Problems, int K, double AvgAtK, double PassAt1, double PassAtK);

/// <summary>Avg@K, pass@1 and pass@K from per-problem sample rewards: pure functions, unit-tested.</summary>
public static class AvgAtK
{
    /// <summary>Scores of problems given as (data source, rewards of their K samples in sample order).</summary>
    public static IReadOnlyList<EvalScore> Score(IReadOnlyList<(string DataSource, IReadOnlyList<double> Rewards)> problems)
    {
        var rows = problems.GroupBy(p => p.DataSource, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => Row(g.Key, g.ToArray())).ToList();
        if (rows.Count != 1) rows.Add(Row("all", problems));
        return rows;
    }

    private static EvalScore Row(string name, IReadOnlyList<(string DataSource, IReadOnlyList<double> Rewards)> problems)
    {
        if (problems.Count == 0) return new EvalScore(name, 0, 0, 0, 0, 0);
        int k = problems[0].Rewards.Count;
        if (problems.Any(p => p.Rewards.Count != k)) throw new ArgumentException($"{name}: every problem needs the same number of samples");
        double avg = problems.Average(p => p.Rewards.Count == 0 ? 0 : p.Rewards.Count(r => r >= 1) / (double)p.Rewards.Count);
        double pass1 = problems.Average(p => p.Rewards.Count > 0 && p.Rewards[0] >= 1 ? 1.0 : 0.0);
        double passK = problems.Average(p => p.Rewards.Any(r => r >= 1) ? 1.0 : 0.0);
        return new EvalScore(name, problems.Count, k, avg, pass1, passK);
    }
}
