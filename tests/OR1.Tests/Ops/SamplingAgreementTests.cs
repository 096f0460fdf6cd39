using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

/// <summary>
/// For the same seed and counter every backend draws the Cpu backend's tokens: the samplers follow the same integer
/// rules (SamplingRules, kernels/sampling.cu), so only a last-bit difference of exp between implementations can move a
/// draw, and only when a uniform lands within that bit of a boundary (never for these data). Vocabularies of 1, 7 and
/// Qwen2's 151,936 tokens, one row and 33, every option class; the drawn tokens of the first rows also lie in the
/// double reference's support, and every log-prob is the reference's log softmax at the token.
/// </summary>
[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class SamplingAgreementTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private CpuBackend _cpu = null!;

    [OneTimeSetUp]
    public void CreateCpu() => _cpu = new CpuBackend(threads: 2);

    [OneTimeTearDown]
    public void DisposeCpu() => _cpu?.Dispose();

    internal static readonly SamplingOptions[] Options =
    [
        new(1f),                   // the recipe: no filter
        new(0f),                   // greedy
        new(0.7f, TopK: 40),
        new(1f, TopP: 0.9f),
        new(1.3f, TopP: 0.8f, TopK: 50),
    ];

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (int vocab in new[] { 1, 7, 151_936 })
            foreach (int rows in new[] { 1, 33 })
                for (int o = 0; o < Options.Length; o++)
                    yield return new TestCaseData(vocab, rows, o).SetArgDisplayNames($"V {vocab}", $"{rows} rows", Describe(Options[o]));
    }

    private static string Describe(SamplingOptions o) => $"T {o.Temperature} top-k {o.TopK} top-p {o.TopP}";

    /// <summary>
    /// Logits shaped like a language model's: normal with a few much larger values, so the top-k and nucleus boundaries
    /// fall among a few hundred candidates, as they do for real rows. Exact ties come from rounding to 1/64.
    /// </summary>
    internal static float[] ModelLikeLogits(int rows, int vocab, int seed)
    {
        var logits = TestData.Normal(rows * vocab, seed, std: 2f);
        var boosted = TestData.Ints(rows * Math.Min(8, vocab), vocab, seed + 1);
        for (int b = 0; b < rows; b++)
            for (int i = 0; i < Math.Min(8, vocab); i++)
                logits[b * vocab + boosted[b * Math.Min(8, vocab) + i]] += 6f + i;
        for (int i = 0; i < logits.Length; i++) logits[i] = MathF.Round(logits[i] * 64f) / 64f;
        return logits;
    }

    /// <summary>
    /// Rows that mislead the Cpu backend's sample (every 32nd id): either only the sampled ids are likely, so the sample
    /// overstates the head 32 times and the first brackets lie too high, or the likely tokens all sit between sampled
    /// ids. Its search must move and widen the brackets that miss, and still draw the same tokens.
    /// </summary>
    internal static float[] MisleadingSample(int rows, int vocab, int seed, bool headSampled)
    {
        var logits = TestData.Normal(rows * vocab, seed, std: 1f);
        var noise = TestData.Normal(rows * vocab, seed + 1, std: 0.3f);
        for (int b = 0; b < rows; b++)
            for (int j = headSampled ? 0 : 5; j < vocab; j += 32)
                logits[b * vocab + j] = 4f + noise[b * vocab + j];
        return logits;
    }

    public static IEnumerable<TestCaseData> MisleadingSampleCases()
    {
        foreach (bool headSampled in new[] { true, false })
            foreach (int o in new[] { 0, 3, 4 })
                yield return new TestCaseData(headSampled, o).SetArgDisplayNames(headSampled ? "head on sampled ids" : "head between sampled ids", Describe(Options[o]));
    }

    [TestCaseSource(nameof(MisleadingSampleCases))]
    public void DrawsTheCpuBackendsTokensWhenItsSampleMisleads(bool headSampled, int option)
    {
        const int rows = 9, vocab = 151_936;
        SkipIfLarge(true, $"{rows} rows of {vocab} tokens");
        Check(MisleadingSample(rows, vocab, 41 + option, headSampled), rows, vocab, Options[option]);
    }

    [TestCaseSource(nameof(Cases))]
    public void DrawsTheCpuBackendsTokens(int vocab, int rows, int option)
    {
        SkipIfLarge(vocab > 1000, $"{rows} rows of {vocab} tokens");
        Check(ModelLikeLogits(rows, vocab, vocab + rows + option), rows, vocab, Options[option]);
        if (vocab == 1) Assert.That(Sample(Backend, ModelLikeLogits(rows, vocab, vocab + rows + option), rows, vocab, Options[option]).Tokens, Is.All.Zero);
    }

    private void Check(float[] logits, int rows, int vocab, SamplingOptions options)
    {
        var (tokens, logProbs) = Sample(Backend, logits, rows, vocab, options);
        if (Backend is not CpuBackend)
        {
            var (cpuTokens, cpuLogProbs) = Sample(_cpu, logits, rows, vocab, options);
            Assert.That(tokens, Is.EqualTo(cpuTokens), $"tokens of {Case.Name} vs Cpu");
            Assert.That(logProbs, Is.EqualTo(cpuLogProbs).Within(Tol(2e-5)), $"log-probs of {Case.Name} vs Cpu");
        }
        for (int b = 0; b < rows; b++)
        {
            var row = TestData.ToDouble(logits.AsSpan(b * vocab, vocab));
            Assert.That(logProbs[b], Is.EqualTo(SamplingReference.LogSoftmaxAt(row, tokens[b], options.Temperature)).Within(Tol(1e-4)),
                $"row {b}: log-prob of the unfiltered tempered distribution");
            if (b < 2)
                Assert.That(SamplingReference.Probabilities(row, options.Temperature, options.TopK, options.TopP)[tokens[b]], Is.GreaterThan(0),
                    $"row {b}: token {tokens[b]} lies outside the filtered distribution");
        }
    }

    internal static (int[] Tokens, float[] LogProbs) Sample(IBackend backend, float[] logits, int rows, int vocab, SamplingOptions options)
    {
        using var l = backend.Floats(logits, rows, vocab);
        using var tokens = backend.Allocate(DType.Int32, new TensorShape(rows));
        using var logProbs = backend.Poisoned(rows);
        backend.Sample(l, options, seed: 23, counter: 9, tokens, logProbs);
        return (tokens.ToInts(), logProbs.ToFloats());
    }
}
