namespace OR1.Grpo.Training;

/// <summary>
/// Rejection sampling of zero-signal groups (docs/RECIPE.md step 4): a group whose rewards are all equal
/// (all 0 or all 1) has zero advantage everywhere and only dilutes the token mean, so it is dropped.
/// No refill: if nothing is left the step is skipped.
/// </summary>
public static class GroupFilter
{
    /// <summary>True when the group's rewards are not all equal (a group of one carries no comparison and is dropped too).</summary>
    public static bool HasSignal(IReadOnlyList<double> rewards)
    {
        if (rewards.Count < 2) return false;
        for (int i = 1; i < rewards.Count; i++)
            if (rewards[i] != rewards[0]) return true;
        return false;
    }

    /// <summary>Indices of the groups to keep, in order.</summary>
    public static int[] KeptGroups(IReadOnlyList<IReadOnlyList<double>> groupRewards) =>
        Enumerable.Range(0, groupRewards.Count).Where(g => HasSignal(groupRewards[g])).ToArray();

    /// <summary>How groups fared, for the accuracy histogram of the metrics.</summary>
    public static (int SolveNone, int SolveAll, int Partial) Histogram(IReadOnlyList<IReadOnlyList<double>> groupRewards)
    {
        int none = 0, all = 0, partial = 0;
        foreach (var g in groupRewards)
        {
            if (g.All(r => r <= 0)) none++;
            else if (g.All(r => r >= 1)) all++;
            else partial++;
        }
        return (none, all, partial);
    }
}
