using OR1.Grpo.Training;

namespace OR1.Tests.Training;

public sealed class GroupFilterTests
{
    [Test]
    public void AllZeroAndAllOneGroupsAreDropped()
    {
        double[][] groups = [[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [0, 1], [1], [1, 1, 0]];
        Assert.That(GroupFilter.KeptGroups(groups), Is.EqualTo(new[] { 2, 3, 5 }));
    }

    [Test]
    public void HistogramCountsSolveNoneSolveAllPartial()
    {
        double[][] groups = [[0, 0], [1, 1], [1, 0], [0, 0, 0], [0, 1, 1]];
        Assert.That(GroupFilter.Histogram(groups), Is.EqualTo((2, 1, 2)));
    }

    [TestCase(LossAggregation.TokenMean, 10, 2, 40, 8, 1.0 / 40)]
    [TestCase(LossAggregation.VerlCompat, 10, 2, 40, 8, 1.0 / 10 * 2 / 8)]
    [TestCase(LossAggregation.VerlCompat, 30, 6, 40, 8, 1.0 / 30 * 6 / 8)]
    [TestCase(LossAggregation.TokenMean, 0, 0, 0, 0, 0.0)]
    public void LossWeights(LossAggregation aggregation, int mbTokens, int mbSeqs, int tokens, int seqs, double expected) =>
        Assert.That(OR1.Grpo.Training.LossWeights.TokenWeight(aggregation, mbTokens, mbSeqs, tokens, seqs), Is.EqualTo(expected).Within(1e-15));

    [Test]
    public void BothAggregationsSumToOneOverAMiniBatch()
    {
        // Micro-batches of (tokens, sequences): token weights summed over every token of the mini-batch give 1.
        (int Tokens, int Seqs)[] micro = [(10, 2), (30, 6), (5, 1)];
        int tokens = micro.Sum(m => m.Tokens), seqs = micro.Sum(m => m.Seqs);
        foreach (var aggregation in new[] { LossAggregation.TokenMean, LossAggregation.VerlCompat })
        {
            double total = micro.Sum(m => m.Tokens * OR1.Grpo.Training.LossWeights.TokenWeight(aggregation, m.Tokens, m.Seqs, tokens, seqs));
            Assert.That(total, Is.EqualTo(1).Within(1e-12), aggregation.ToString());
        }
    }
}
