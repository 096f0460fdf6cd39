using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class LogProbTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    // (rows, width, vocab, temperature, with entropy gradient). Shapes cover one vocabulary chunk, several
    // chunks with a ragged last one (split across threads by vocabulary), and a small vocabulary with many
    // rows (split by tokens).
    [TestCase(1, 1, 1, 1f, true)]
    [TestCase(3, 5, 11, 0.7f, true)]
    [TestCase(64, 8, 1031, 1f, true)]
    [TestCase(300, 32, 50, 0.6f, false)]
    [TestCase(130, 24, 1500, 1.3f, true)]
    public void ForwardAndBackwardMatchReference(int rows, int width, int vocab, float temperature, bool entropyGradient)
    {
        SkipIfLarge((long)rows * width * vocab > 1_000_000, $"{rows} rows x {width} x {vocab} tokens");
        var hidden = TestData.Normal(rows * width, rows + vocab);
        var weight = TestData.Normal(vocab * width, 2, std: 0.5f);
        var targets = TestData.Ints(rows, vocab, 3);
        var ht = Floats(hidden, rows, width);
        var wt = Floats(weight, vocab, width);
        var tt = Ints(targets, rows);
        var logp = Poisoned(rows);
        var entropy = Poisoned(rows);
        var lse = Poisoned(rows);
        Backend.LogProbForward(ht, wt, tt, temperature, logp, entropy, lse);
        var (refLogp, refEntropy, refLse) = LogProbReference.Forward(TestData.ToDouble(hidden), TestData.ToDouble(weight), targets, width, vocab, temperature);
        TensorAssert.Close(logp.ToFloats(), refLogp, Tol(1e-4), Tol(1e-5), "log-probs");
        TensorAssert.Close(entropy.ToFloats(), refEntropy, Tol(1e-4), Tol(1e-5), "entropy");
        TensorAssert.Close(lse.ToFloats(), refLse, Tol(1e-4), Tol(1e-5), "log-sum-exp");

        var dLogp = TestData.Uniform(rows, 4);
        var dEntropy = entropyGradient ? TestData.Uniform(rows, 5) : null;
        var dHidden = Poisoned(rows, width);
        var dWeightInit = TestData.Uniform(vocab * width, 6);
        var dWeight = Floats(dWeightInit, vocab, width);
        Backend.LogProbBackward(Floats(dLogp, rows), dEntropy is null ? null : Floats(dEntropy, rows), ht, wt, tt, temperature, entropy, lse, dHidden, dWeight);
        var refDWeight = TestData.ToDouble(dWeightInit);
        var refDHidden = LogProbReference.Backward(TestData.ToDouble(dLogp), dEntropy is null ? null : TestData.ToDouble(dEntropy),
            TestData.ToDouble(hidden), TestData.ToDouble(weight), targets, width, vocab, temperature, refDWeight);
        TensorAssert.Close(dHidden.ToFloats(), refDHidden, Tol(1e-4), Tol(1e-4), "dHidden", [rows, width]);
        TensorAssert.Close(dWeight.ToFloats(), refDWeight, Tol(1e-4), Tol(1e-4), "dWeight (accumulated)", [vocab, width]);
    }

    /// <summary>
    /// The fused op against the unfused path on the same backend: the whole [rows x vocab] logits from the backend's
    /// GEMM, log-softmax, entropy and dz from them (in double, on the host), and dHidden and dWeight from dz by the
    /// backend's GEMMs. Only the fusion differs (tiles, the online statistics, dz in fp32 in place), so the results agree
    /// far closer than either does with the double reference of the inputs.
    /// </summary>
    [TestCase(67, 24, 1061, 0.7f)]
    [TestCase(5, 16, 8230, 1f)]
    public void FusedMatchesTheUnfusedPath(int rows, int width, int vocab, float temperature)
    {
        var hidden = TestData.Normal(rows * width, 41);
        var weight = TestData.Normal(vocab * width, 42, std: 0.5f);
        var targets = TestData.Ints(rows, vocab, 43);
        targets[^1] = vocab - 1;
        var dLogp = TestData.Uniform(rows, 44);
        var dEntropy = TestData.Uniform(rows, 45);
        var ht = Floats(hidden, rows, width);
        var wt = Floats(weight, vocab, width);

        // Unfused: logits, then per row in double: lse, p, H, logp, dz (the same formula the kernels use).
        var logitsT = Poisoned(rows, vocab);
        Backend.MatMul(ht, false, wt, true, logitsT, alpha: 1f / temperature);
        var logits = logitsT.ToFloats();
        var logp = new double[rows];
        var entropy = new double[rows];
        var dz = new float[rows * vocab];
        for (int n = 0; n < rows; n++)
        {
            var z = logits.AsSpan(n * vocab, vocab);
            double max = double.NegativeInfinity, sum = 0, moment = 0;
            foreach (float x in z) max = Math.Max(max, x);
            foreach (float x in z) sum += Math.Exp(x - max);
            double lse = max + Math.Log(sum);
            foreach (float x in z) moment += Math.Exp(x - lse) * x;
            entropy[n] = lse - moment;
            logp[n] = z[targets[n]] - lse;
            double shift = dLogp[n] + dEntropy[n] * (entropy[n] - lse);
            for (int j = 0; j < vocab; j++)
            {
                double p = Math.Exp(z[j] - lse);
                dz[n * vocab + j] = (float)(-(p * (z[j] * dEntropy[n] + shift)) + (j == targets[n] ? dLogp[n] : 0));
            }
        }
        var dzT = Floats(dz, rows, vocab);
        var unfusedDHidden = Poisoned(rows, width);
        Backend.MatMul(dzT, false, wt, false, unfusedDHidden, alpha: 1f / temperature);
        var unfusedDWeight = Zeros(vocab, width);
        Backend.MatMul(dzT, true, ht, false, unfusedDWeight, alpha: 1f / temperature);

        var fusedLogp = Poisoned(rows);
        var fusedEntropy = Poisoned(rows);
        var fusedLse = Poisoned(rows);
        var tt = Ints(targets, rows);
        Backend.LogProbForward(ht, wt, tt, temperature, fusedLogp, fusedEntropy, fusedLse);
        var fusedDHidden = Poisoned(rows, width);
        var fusedDWeight = Zeros(vocab, width);
        Backend.LogProbBackward(Floats(dLogp, rows), Floats(dEntropy, rows), ht, wt, tt, temperature, fusedEntropy, fusedLse, fusedDHidden, fusedDWeight);

        TensorAssert.Close(fusedLogp.ToFloats(), logp, Tol(2e-5), Tol(2e-6), "log-probs: fused vs unfused");
        TensorAssert.Close(fusedEntropy.ToFloats(), entropy, Tol(2e-5), Tol(2e-6), "entropy: fused vs unfused");
        TensorAssert.Close(fusedDHidden.ToFloats(), TestData.ToDouble(unfusedDHidden.ToFloats()), Tol(1e-5), Tol(1e-5), "dHidden: fused vs unfused", [rows, width]);
        TensorAssert.Close(fusedDWeight.ToFloats(), TestData.ToDouble(unfusedDWeight.ToFloats()), Tol(1e-5), Tol(1e-5), "dWeight: fused vs unfused", [vocab, width]);
    }

    /// <summary>
    /// At the 1.5B model's shape (hidden 1536, vocabulary 151,936) and a 16K-token micro-batch, the backend's log-prob
    /// takes at most 1/8 of the bytes of the unfused fp32 logits (9.3 GiB), in either storage it holds.
    /// </summary>
    [Test]
    public void PeakScratchAtThe15BShapeIsAtMostAnEighthOfTheUnfusedLogits()
    {
        foreach (var storage in Backend.StorageTypes)
        {
            var plan = Backend.PlanLogProb(16384, 151936, 1536, storage);
            TestContext.Out.WriteLine($"{storage}: {plan}");
            Assert.That(plan.ScratchBytes, Is.LessThanOrEqualTo(plan.UnfusedLogitBytes / 8), $"{storage}: {plan}");
            Assert.That(plan.RowBlock, Is.InRange(1, 16384));
            Assert.That(plan.VocabChunk, Is.InRange(1, 151936));
        }
    }

    [Test]
    public void BackwardMatchesFiniteDifferencesOfForward()
    {
        const int rows = 6, width = 7, vocab = 600;
        const float temperature = 0.8f;
        var hidden = TestData.Normal(rows * width, 21);
        var weight = TestData.Normal(vocab * width, 22, std: 0.5f);
        var targets = TestData.Ints(rows, vocab, 23);
        var a = TestData.Uniform(rows, 24);
        var c = TestData.Uniform(rows, 25);
        double Objective(float[] hs, float[] ws)
        {
            var logp = Zeros(rows);
            var entropy = Zeros(rows);
            Backend.LogProbForward(Floats(hs, rows, width), Floats(ws, vocab, width), Ints(targets, rows), temperature, logp, entropy, Zeros(rows));
            return FloatGradientCheck.Project(logp.ToFloats(), a) + FloatGradientCheck.Project(entropy.ToFloats(), c);
        }
        var ht = Floats(hidden, rows, width);
        var wt = Floats(weight, vocab, width);
        var lp = Zeros(rows); var ent = Zeros(rows); var lse = Zeros(rows);
        Backend.LogProbForward(ht, wt, Ints(targets, rows), temperature, lp, ent, lse);
        var dHidden = Zeros(rows, width);
        var dWeight = Zeros(vocab, width);
        Backend.LogProbBackward(Floats(a, rows), Floats(c, rows), ht, wt, Ints(targets, rows), temperature, ent, lse, dHidden, dWeight);
        FloatGradientCheck.Directional(hs => Objective(hs, weight), hidden, dHidden.ToFloats(), "log-prob dHidden");
        FloatGradientCheck.Directional(ws => Objective(hidden, ws), weight, dWeight.ToFloats(), "log-prob dWeight");
    }

    [Test]
    public void ExtremeLogitsStayFinite()
    {
        // Hidden states large enough that unshifted exponentials would overflow fp32 many times over.
        const int rows = 2, width = 4, vocab = 1100;
        var hidden = Floats([200, -150, 90, 300, -400, 10, 0, 250], rows, width);
        var weight = Floats(TestData.Normal(vocab * width, 9), vocab, width);
        var lp = Poisoned(rows); var ent = Poisoned(rows); var lse = Poisoned(rows);
        Backend.LogProbForward(hidden, weight, Ints([5, 1099], rows), 1f, lp, ent, lse);
        Assert.That(lp.ToFloats().Concat(ent.ToFloats()).Concat(lse.ToFloats()), Is.All.Matches<float>(float.IsFinite));
        Assert.That(ent.ToFloats(), Is.All.GreaterThanOrEqualTo(-1e-3f));
    }

    [Test]
    public void BackwardIsDeterministic()
    {
        SkipIfLarge(true, "200 rows x 16 x 1500 tokens");
        const int rows = 200, width = 16, vocab = 1500;
        var ht = Floats(TestData.Normal(rows * width, 1), rows, width);
        var wt = Floats(TestData.Normal(vocab * width, 2), vocab, width);
        var tt = Ints(TestData.Ints(rows, vocab, 3), rows);
        var lp = Zeros(rows); var ent = Zeros(rows); var lse = Zeros(rows);
        Backend.LogProbForward(ht, wt, tt, 1f, lp, ent, lse);
        var g = Floats(TestData.Uniform(rows, 4), rows);
        (float[], float[]) Run()
        {
            var dh = Zeros(rows, width); var dw = Zeros(vocab, width);
            Backend.LogProbBackward(g, g, ht, wt, tt, 1f, ent, lse, dh, dw);
            return (dh.ToFloats(), dw.ToFloats());
        }
        var (h1, w1) = Run();
        var (h2, w2) = Run();
        Assert.That(h2, Is.EqualTo(h1));
        Assert.That(w2, Is.EqualTo(w1));
    }
}
