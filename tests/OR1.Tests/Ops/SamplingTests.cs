using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class SamplingTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private static readonly float[] Row = [1.0f, 2.5f, -0.5f, 2.5f, 0.2f, 1.7f, -3f];

    /// <summary>Draws <paramref name="draws"/> tokens from copies of one row in a single call.</summary>
    private (int[] Tokens, float[] LogProbs) Draw(float[] row, SamplingOptions options, int draws, ulong seed = 42, ulong counter = 0)
    {
        var logits = new float[draws * row.Length];
        for (int b = 0; b < draws; b++) row.CopyTo(logits, b * row.Length);
        var tokens = Own(Backend.Allocate(DType.Int32, new TensorShape(draws)));
        var logProbs = Poisoned(draws);
        Backend.Sample(Floats(logits, draws, row.Length), options, seed, counter, tokens, logProbs);
        return (tokens.ToInts(), logProbs.ToFloats());
    }

    /// <summary>
    /// Ties at 1.0 (ids 1, 2, 3 and 6) straddle the boundaries of the cases below, so a sampler that keeps the wrong tied
    /// ids, or one token too many or too few at the top-k or nucleus boundary, draws from a visibly different distribution
    /// (at T = 1 the probabilities are 0.347, 0.128 for each tie, 0.078, 0.047, 0.017).
    /// </summary>
    private static readonly float[] BoundaryRow = [2.0f, 1.0f, 1.0f, 1.0f, 0.5f, 0.0f, 1.0f, -1.0f];

    /// <summary>
    /// Draws from copies of a row (one call, so each row has its own counter-based uniform) fit the exact filtered
    /// distribution: no draw of a filtered-out token, and Pearson's chi-square over the kept ones with a p-value above
    /// 1e-6. The seed is fixed, so the p-value is too; a sampler off by one token at a boundary scores far below.
    /// </summary>
    private static void AssertDrawsFit(int[] tokens, double[] probabilities, string what)
    {
        var counts = new int[probabilities.Length];
        foreach (int t in tokens)
        {
            Assert.That(t, Is.InRange(0, probabilities.Length - 1), $"{what}: token out of range");
            counts[t]++;
        }
        for (int j = 0; j < probabilities.Length; j++)
            if (probabilities[j] == 0)
                Assert.That(counts[j], Is.Zero, $"{what}: token {j} has probability 0 after filtering but was drawn {counts[j]} times");
        var (statistic, df) = ChiSquare.Statistic(counts, probabilities);
        double p = ChiSquare.PValue(statistic, df);
        string observed = string.Join(", ", counts.Select((c, j) => $"{j}: {c} (expected {tokens.Length * probabilities[j]:F0})"));
        TestContext.Out.WriteLine($"{what}: chi-square {statistic:F2} with {df} degrees of freedom, p = {p:G3}; {observed}");
        Assert.That(p, Is.GreaterThan(1e-6), $"{what}: the draws do not fit the filtered distribution (chi-square {statistic:F1}, {df} df, p = {p:G3}): {observed}");
    }

    [TestCase(1f, 0, 1f)]
    [TestCase(0.7f, 0, 1f)]
    [TestCase(1f, 3, 1f)]
    [TestCase(1f, 0, 0.8f)]
    [TestCase(1.5f, 4, 0.9f)]
    public void FrequenciesMatchTheReferenceDistribution(float temperature, int topK, float topP)
    {
        var (tokens, logProbs) = Draw(Row, new SamplingOptions(temperature, topP, topK), 20000);
        var probabilities = SamplingReference.Probabilities(TestData.ToDouble(Row), temperature, topK, topP);
        AssertDrawsFit(tokens, probabilities, $"T {temperature}, top-k {topK}, top-p {topP}");
        for (int b = 0; b < 50; b++)
            Assert.That(logProbs[b], Is.EqualTo(SamplingReference.LogSoftmaxAt(TestData.ToDouble(Row), tokens[b], temperature)).Within(1e-5),
                "log-prob is of the unfiltered tempered distribution");
    }

    // top-k 3 keeps id 0 and the two lowest tied ids (1, 2); top-p 0.6 ends at the second tie (0.347 + 0.128 = 0.475,
    // + 0.128 = 0.603); top-k 5 then top-p 0.7 at T 1.3 cuts inside the ties as well.
    [TestCase(1f, 3, 1f)]
    [TestCase(1f, 0, 0.6f)]
    [TestCase(1.3f, 5, 0.7f)]
    public void TiesAtTheBoundariesKeepTheLowestIds(float temperature, int topK, float topP)
    {
        // 6000 draws: a token missing at a boundary (a kept one has probability 0.128 or more) would be about 770 draws short.
        var (tokens, _) = Draw(BoundaryRow, new SamplingOptions(temperature, topP, topK), 6000, seed: 5, counter: 11);
        var probabilities = SamplingReference.Probabilities(TestData.ToDouble(BoundaryRow), temperature, topK, topP);
        AssertDrawsFit(tokens, probabilities, $"T {temperature}, top-k {topK}, top-p {topP}");
    }

    [Test]
    public void GreedyTakesTheFirstMaximum()
    {
        var (tokens, logProbs) = Draw(Row, new SamplingOptions(Temperature: 0), 3);
        Assert.That(tokens, Is.All.EqualTo(1));
        Assert.That(logProbs[0], Is.EqualTo(SamplingReference.LogSoftmaxAt(TestData.ToDouble(Row), 1, 1)).Within(1e-6));
    }

    [Test]
    public void SameSeedAndCounterReproduce_OtherCounterDiffers()
    {
        var first = Draw(Row, new SamplingOptions(), 200, seed: 7, counter: 3).Tokens;
        var again = Draw(Row, new SamplingOptions(), 200, seed: 7, counter: 3).Tokens;
        var next = Draw(Row, new SamplingOptions(), 200, seed: 7, counter: 4).Tokens;
        Assert.That(again, Is.EqualTo(first));
        Assert.That(next, Is.Not.EqualTo(first));
    }

    [Test]
    public void LargeVocabularyWithTopP()
    {
        SkipIfLarge(true, "2000 draws over a 5000-token vocabulary");
        var row = TestData.Normal(5000, 3, std: 3f);
        var (tokens, _) = Draw(row, new SamplingOptions(1f, 0.5f), 2000);
        var probabilities = SamplingReference.Probabilities(TestData.ToDouble(row), 1, 0, 0.5);
        Assert.That(tokens.All(t => probabilities[t] > 0), "every draw lies in the nucleus");
    }

    /// <summary>
    /// A model-like row over 16 blocks of 256 tokens: six likely tokens in four blocks (two at the ends of the row, two
    /// neighbours inside one block) over a flat bulk. The Cpu sampler's search skips the blocks whose largest relative
    /// probability lies below its brackets, and the kernels refine whole rows: both must still draw the exact filtered
    /// distribution, ties and block edges included.
    /// </summary>
    [TestCase(1f, 0, 0.9f)]
    [TestCase(1f, 4, 1f)]
    [TestCase(0.8f, 5, 0.95f)]
    public void SparseHeadsAcrossBlocksFitTheFilteredDistribution(float temperature, int topK, float topP)
    {
        SkipIfLarge(true, "4000 draws over a 4096-token vocabulary");
        var row = TestData.Normal(4096, 17, std: 1f);
        int[] head = [0, 700, 701, 2300, 3000, 4095];
        float[] lift = [9f, 10f, 10f, 8.5f, 9.5f, 10.5f];
        for (int i = 0; i < head.Length; i++) row[head[i]] = lift[i];
        var (tokens, _) = Draw(row, new SamplingOptions(temperature, topP, topK), 4000, seed: 3, counter: 5);
        var probabilities = SamplingReference.Probabilities(TestData.ToDouble(row), temperature, topK, topP);
        Assert.That(probabilities.Count(p => p > 0), Is.InRange(2, 6), "the filter keeps a few of the head tokens");
        AssertDrawsFit(tokens, probabilities, $"T {temperature}, top-k {topK}, top-p {topP}");
    }
}
