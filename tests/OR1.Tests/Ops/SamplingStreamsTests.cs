using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

/// <summary>
/// Sampling with per-request streams (the rollout engine's continuous batching): row b draws from the hash of (seed,
/// position, request id) in streams[b], so a request's token and log-prob do not depend on the batch around it.
/// </summary>
[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class SamplingStreamsTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private static readonly SamplingOptions[] Options = [new(1f), new(0.8f, TopP: 0.9f), new(1f, TopP: 0.95f, TopK: 20)];

    private (int[] Tokens, float[] LogProbs) Draw(float[] logits, int rows, int vocab, SamplingOptions options, int[] streams)
    {
        var tokens = Own(Backend.Allocate(DType.Int32, new TensorShape(rows)));
        var logProbs = Poisoned(rows);
        var s = Own(Backend.Allocate(DType.Int32, new TensorShape(rows, 2)));
        Backend.Upload<int>(streams, s);
        Backend.Sample(Floats(logits, rows, vocab), options, 77, s, tokens, logProbs);
        return (tokens.ToInts(), logProbs.ToFloats());
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(2)]
    public void ARequestDrawsTheSameAloneAsInABatchOf32(int option)
    {
        const int rows = 32, vocab = 300;
        var logits = SamplingAgreementTests.ModelLikeLogits(rows, vocab, 5 + option);
        // Request 1000 + b at position 3b + 1 in row b; then each request alone, its row the only one.
        var streams = new int[2 * rows];
        for (int b = 0; b < rows; b++) (streams[2 * b], streams[2 * b + 1]) = (1000 + b, 3 * b + 1);
        var (batched, batchedLogProbs) = Draw(logits, rows, vocab, Options[option], streams);
        for (int b = 0; b < rows; b++)
        {
            var (alone, aloneLogProb) = Draw(logits.AsSpan(b * vocab, vocab).ToArray(), 1, vocab, Options[option], [1000 + b, 3 * b + 1]);
            Assert.That(alone[0], Is.EqualTo(batched[b]), $"request {1000 + b}: its token alone vs in row {b} of a batch of {rows}");
            Assert.That(aloneLogProb[0], Is.EqualTo(batchedLogProbs[b]), $"request {1000 + b}: its log-prob alone vs in the batch");
        }
    }

    /// <summary>
    /// The truncated mass of a draw is the full distribution's probability outside the tokens top-k and top-p kept (the
    /// double reference's filter), 0 without a filter and when greedy; asking for it changes neither token nor log-prob.
    /// </summary>
    [TestCase(0, 300)]
    [TestCase(1, 300)]
    [TestCase(2, 300)]
    [TestCase(1, 5000)]
    [TestCase(2, 5000)]
    [TestCase(-1, 300)]
    public void TheTruncatedMassIsTheProbabilityOutsideTheDraw(int option, int vocab)
    {
        const int rows = 16;
        var options = option < 0 ? new SamplingOptions(0f) : Options[option];
        var logits = SamplingAgreementTests.ModelLikeLogits(rows, vocab, 40 + option);
        var streams = new int[2 * rows];
        for (int b = 0; b < rows; b++) (streams[2 * b], streams[2 * b + 1]) = (b, 7);
        var tokens = Own(Backend.Allocate(DType.Int32, new TensorShape(rows)));
        var logProbs = Poisoned(rows);
        var truncated = Poisoned(rows);
        var s = Own(Backend.Allocate(DType.Int32, new TensorShape(rows, 2)));
        Backend.Upload<int>(streams, s);
        Backend.Sample(Floats(logits, rows, vocab), options, 77, s, tokens, logProbs, truncated);
        var without = Draw(logits, rows, vocab, options, streams);
        Assert.That(tokens.ToInts(), Is.EqualTo(without.Tokens), "the same tokens with the truncated mass asked for");
        Assert.That(logProbs.ToFloats(), Is.EqualTo(without.LogProbs), "and the same log-probs");
        var got = truncated.ToFloats();
        for (int b = 0; b < rows; b++)
        {
            var row = TestData.ToDouble(logits.AsSpan(b * vocab, vocab).ToArray());
            double expected = 0;
            if (options.Temperature > 0)
            {
                var full = SamplingReference.Probabilities(row, options.Temperature);
                var kept = SamplingReference.Probabilities(row, options.Temperature, options.TopK, options.TopP);
                for (int j = 0; j < vocab; j++)
                    if (kept[j] == 0) expected += full[j];
            }
            Assert.That(got[b], Is.EqualTo(expected).Within(2e-6), $"row {b}: the probability outside the draw");
        }
        if (option > 0) Assert.That(got.Max(), Is.GreaterThan(1e-3f), "the filters cut something (the assertions above can fail)");
    }

    [Test]
    public void StreamsAreTheCounterPathWithTheRowAsRequestAndTheCounterAsPosition()
    {
        const int rows = 9, vocab = 50;
        var logits = SamplingAgreementTests.ModelLikeLogits(rows, vocab, 3);
        var streams = new int[2 * rows];
        for (int b = 0; b < rows; b++) (streams[2 * b], streams[2 * b + 1]) = (b, 12);
        var viaStreams = Draw(logits, rows, vocab, Options[0], streams);
        var tokens = Own(Backend.Allocate(DType.Int32, new TensorShape(rows)));
        var logProbs = Poisoned(rows);
        Backend.Sample(Floats(logits, rows, vocab), Options[0], 77, 12, tokens, logProbs);
        Assert.That(viaStreams.Tokens, Is.EqualTo(tokens.ToInts()));
        // A different position moves the draws: the stream is keyed by it.
        for (int b = 0; b < rows; b++) streams[2 * b + 1] = 13;
        Assert.That(Draw(logits, rows, vocab, Options[0], streams).Tokens, Is.Not.EqualTo(viaStreams.Tokens));
    }

    [Test]
    public void StreamsOfTheWrongShapeAreRefused()
    {
        var tokens = Own(Backend.Allocate(DType.Int32, new TensorShape(3)));
        var logProbs = Poisoned(3);
        var streams = Own(Backend.Allocate(DType.Int32, new TensorShape(3)));
        var e = Assert.Throws<ArgumentException>(() => Backend.Sample(Floats(new float[15], 3, 5), new SamplingOptions(), 1, streams, tokens, logProbs))!;
        Assert.That(e.Message, Does.Contain("Sample").And.Contain("streams"));
    }
}
