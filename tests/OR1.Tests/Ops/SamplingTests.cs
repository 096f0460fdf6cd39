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

    private static void AssertFrequenciesMatch(int[] tokens, double[] probabilities)
    {
        int n = tokens.Length;
        for (int j = 0; j < probabilities.Length; j++)
        {
            double p = probabilities[j];
            int count = tokens.Count(t => t == j);
            if (p == 0)
            {
                Assert.That(count, Is.Zero, $"token {j} has probability 0 after filtering but was drawn {count} times");
                continue;
            }
            // Five binomial standard deviations: a false alarm is ~1e-6 per token.
            double sigma = Math.Sqrt(n * p * (1 - p));
            Assert.That(count, Is.EqualTo(n * p).Within(5 * sigma + 1), $"token {j}: drawn {count} of {n}, expected {n * p:F1}");
        }
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
        AssertFrequenciesMatch(tokens, probabilities);
        for (int b = 0; b < 50; b++)
            Assert.That(logProbs[b], Is.EqualTo(SamplingReference.LogSoftmaxAt(TestData.ToDouble(Row), tokens[b], temperature)).Within(1e-5),
                "log-prob is of the unfiltered tempered distribution");
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
}
