using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// Sampling from bf16 logits: the kernels widen each logit exactly, so they must draw the tokens the Cpu backend draws
/// from the same values held as fp32 (same seed, same integer rules), and report the same log-probs. bf16 has 8 bits of
/// mantissa, so a 151,936-token row is mostly ties: the boundaries and the draw land inside runs of equal keys, which
/// the kernels resolve by id. Vocabularies of 1, 7 and 151,936, one row and 33.
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class SamplingBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private CpuBackend _cpu = null!;

    [OneTimeSetUp]
    public void CreateCpu() => _cpu = new CpuBackend(threads: 2);

    [OneTimeTearDown]
    public void DisposeCpu() => _cpu?.Dispose();

    // The agreement tests' vocabularies, row counts and option classes.
    [TestCaseSource(typeof(SamplingAgreementTests), nameof(SamplingAgreementTests.Cases))]
    public void DrawsTheCpuBackendsTokensFromTheSameValues(int vocab, int rows, int option)
    {
        var options = SamplingAgreementTests.Options[option];
        var logits = Bf16.Round(SamplingAgreementTests.ModelLikeLogits(rows, vocab, 3 * vocab + rows + option));
        using var l = Backend.BFloat16s(logits, rows, vocab);
        var tokens = Own(Backend.Allocate(DType.Int32, new TensorShape(rows)));
        var logProbs = Poisoned(rows);
        Backend.Sample(l, options, seed: 23, counter: 9, tokens, logProbs);
        var (cpuTokens, cpuLogProbs) = SamplingAgreementTests.Sample(_cpu, logits, rows, vocab, options);
        Assert.That(tokens.ToInts(), Is.EqualTo(cpuTokens), "tokens: bf16 storage vs the Cpu backend on the same values");
        Assert.That(logProbs.ToFloats(), Is.EqualTo(cpuLogProbs).Within(Tol(2e-5)), "log-probs: bf16 storage vs the Cpu backend");
        var drawn = tokens.ToInts();
        var lp = logProbs.ToFloats();
        for (int b = 0; b < rows; b++)
            Assert.That(lp[b], Is.EqualTo(SamplingReference.LogSoftmaxAt(TestData.ToDouble(logits.AsSpan(b * vocab, vocab)), drawn[b], options.Temperature))
                .Within(Tol(1e-4)), $"row {b}: log-prob of the unfiltered tempered distribution");
    }
}

/// <summary>The fp32-only backends refuse bf16 logits at the contract, with the reason.</summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.Fp32Only))]
public sealed class SamplingBf16RefusedTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    [Test]
    public void Bf16LogitsAreRefused()
    {
        var l = Own(Backend.Allocate(DType.BFloat16, new TensorShape(2, 5)));
        var tokens = Own(Backend.Allocate(DType.Int32, new TensorShape(2)));
        var logProbs = Poisoned(2);
        var e = Assert.Throws<ArgumentException>(() => Backend.Sample(l, new SamplingOptions(), 1, 2, tokens, logProbs))!;
        Assert.That(e.Message, Does.Contain("Sample").And.Contain("logits").And.Contain("BFloat16"));
    }
}
