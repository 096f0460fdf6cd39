using NUnit.Framework;
using OR1.Tests.Support;

namespace OR1.Tests.Reference;

/// <summary>
/// The references are the oracle every backend is tested against, so they get checked first: each hand-derived
/// backward against central differences of its own forward (all in double), and a few values against hand arithmetic.
/// </summary>
[TestFixture]
public sealed class ReferenceGradientTests
{
    private const double H = 1e-6;
    // Central differences at h = 1e-6 carry ~1e-10 relative rounding error and ~1e-12 truncation error on these
    // O(1) losses; a wrong derivative is off by O(1), so this tolerance separates the two by orders of magnitude.
    private const double AbsTol = 1e-7;
    private const double RelTol = 1e-6;

    private static void AssertGradient(double[] analytic, Func<double[], double> loss, double[] at, string what)
        => TensorAssert.Close(analytic, FiniteDifference.Gradient(loss, at, H), AbsTol, RelTol, what);

    private static double[] Filled(int n, double value) => Enumerable.Repeat(value, n).ToArray();

    private static double[] Plus(double[] a, double value) => a.Select(x => x + value).ToArray();

    // ------------------------------------------------------------------ MatMul

    [TestCase(false, false, 1)]
    [TestCase(true, false, 1)]
    [TestCase(false, true, 1)]
    [TestCase(true, true, 1)]
    [TestCase(false, false, 2)]
    [TestCase(true, true, 3)]
    [TestCase(true, false, 2)]
    public void MatMulBackwardMatchesFiniteDifferences(bool transposeA, bool transposeB, int batch)
    {
        const int m = 3, n = 4, k = 5;
        const double alpha = 0.7, beta = 0.3;
        double[] a = TestData.NormalDouble(batch * m * k, 1);
        double[] b = TestData.NormalDouble(batch * k * n, 2);
        double[] cOld = TestData.NormalDouble(batch * m * n, 3);
        double[] cotangent = TestData.NormalDouble(batch * m * n, 4);

        double Loss(double[] aa, double[] bb)
        {
            var c = (double[])cOld.Clone();
            MatMulReference.ForwardBatched(aa, transposeA, bb, transposeB, c, batch, m, n, k, alpha, beta);
            return FiniteDifference.Dot(c, cotangent);
        }

        var (dA, dB) = MatMulReference.BackwardBatched(cotangent, a, transposeA, b, transposeB, batch, m, n, k, alpha);
        AssertGradient(dA, x => Loss(x, b), a, "matmul dA");
        AssertGradient(dB, x => Loss(a, x), b, "matmul dB");
    }

    [Test]
    public void MatMulValuesByHand()
    {
        double[] a = [1, 2, 3, 4];
        double[] b = [5, 6, 7, 8];
        double[] c = [double.NaN, double.NaN, double.NaN, double.NaN];
        MatMulReference.Forward(a, false, b, false, c, 2, 2, 2);
        TensorAssert.Close(c, [19.0, 22, 43, 50], 0, 0, "A B with beta = 0 over a NaN-filled c");

        MatMulReference.Forward(a, true, b, false, c, 2, 2, 2);
        TensorAssert.Close(c, [26.0, 30, 38, 44], 0, 0, "A^T B");

        MatMulReference.Forward(a, false, b, true, c, 2, 2, 2, alpha: 2, beta: 1);
        // A B^T = [[17, 23], [39, 53]], doubled and added to the previous A^T B.
        TensorAssert.Close(c, [26.0 + 34, 30 + 46, 38 + 78, 44 + 106], 0, 0, "c += 2 A B^T");
    }

    [Test]
    public void BatchedMatMulIsIndependentMatricesInARow()
    {
        const int batch = 3, m = 2, n = 3, k = 4;
        double[] a = TestData.NormalDouble(batch * m * k, 5);
        double[] b = TestData.NormalDouble(batch * n * k, 6);
        var batched = new double[batch * m * n];
        MatMulReference.ForwardBatched(a, false, b, true, batched, batch, m, n, k);
        for (int t = 0; t < batch; t++)
        {
            var single = new double[m * n];
            MatMulReference.Forward(a[(t * m * k)..((t + 1) * m * k)], false, b[(t * n * k)..((t + 1) * n * k)], true, single, m, n, k);
            TensorAssert.Close(batched.AsSpan(t * m * n, m * n), single, 0, 0, $"batch {t}");
        }
    }

    // ------------------------------------------------------------------ Embedding

    [Test]
    public void EmbeddingBackwardMatchesFiniteDifferencesWithRepeatedIds()
    {
        const int vocab = 5, dim = 3;
        int[] ids = [2, 0, 2, 4, 2];
        double[] table = TestData.NormalDouble(vocab * dim, 7);
        double[] cotangent = TestData.NormalDouble(ids.Length * dim, 8);
        double[] dTable = Filled(vocab * dim, 0.5);

        EmbeddingReference.Backward(ids, cotangent, vocab, dim, dTable);

        double[] fd = FiniteDifference.VectorJacobianProduct(t => EmbeddingReference.Forward(ids, t, vocab, dim), table, cotangent, H);
        TensorAssert.Close(dTable, Plus(fd, 0.5), AbsTol, RelTol, "embedding dTable accumulated onto 0.5", [vocab, dim]);
        // Rows 1 and 3 are never looked up: their gradient must be untouched, not merely small.
        Assert.That(dTable[dim..(2 * dim)], Is.All.EqualTo(0.5));
        Assert.That(dTable[(3 * dim)..(4 * dim)], Is.All.EqualTo(0.5));
        // Id 2 appears three times: its row is the sum of three output gradients.
        Assert.That(dTable[2 * dim], Is.EqualTo(0.5 + cotangent[0 * dim] + cotangent[2 * dim] + cotangent[4 * dim]).Within(1e-15));
    }

    // ------------------------------------------------------------------ RMSNorm

    [Test]
    public void RmsNormBackwardMatchesFiniteDifferences()
    {
        const int rows = 3, dim = 7;
        const double eps = 1e-3;
        double[] x = TestData.NormalDouble(rows * dim, 9);
        double[] weight = TestData.UniformDouble(dim, 10, 0.5, 1.5);
        double[] cotangent = TestData.NormalDouble(rows * dim, 11);
        double[] dWeight = Filled(dim, 0.25);

        var (_, invRms) = RmsNormReference.Forward(x, weight, rows, dim, eps);
        double[] dx = RmsNormReference.Backward(cotangent, x, weight, invRms, rows, dim, dWeight);

        AssertGradient(dx, xx => FiniteDifference.Dot(RmsNormReference.Forward(xx, weight, rows, dim, eps).Output, cotangent), x, "rmsnorm dx");
        double[] fdWeight = FiniteDifference.Gradient(w => FiniteDifference.Dot(RmsNormReference.Forward(x, w, rows, dim, eps).Output, cotangent), weight, H);
        TensorAssert.Close(dWeight, Plus(fdWeight, 0.25), AbsTol, RelTol, "rmsnorm dWeight accumulated onto 0.25");
    }

    [Test]
    public void RmsNormValuesByHand()
    {
        var (output, invRms) = RmsNormReference.Forward([3, 4, 0, 0], [1, 2], 2, 2, 0);
        // mean(3^2, 4^2) = 12.5; the all-zero row with eps = 0 divides by zero, which must surface as Inf, not be hidden.
        Assert.That(invRms[0], Is.EqualTo(1 / Math.Sqrt(12.5)).Within(1e-15));
        Assert.That(double.IsPositiveInfinity(invRms[1]), Is.True);
        Assert.That(output[0], Is.EqualTo(3 / Math.Sqrt(12.5)).Within(1e-15));
        Assert.That(output[1], Is.EqualTo(8 / Math.Sqrt(12.5)).Within(1e-15));
    }

    // ------------------------------------------------------------------ RoPE

    [TestCase(10000.0)]
    [TestCase(7.0)]
    public void RopeBackwardMatchesFiniteDifferences(double theta)
    {
        const int heads = 2, headDim = 6;
        int[] positions = [0, 3, 17];
        double[] x = TestData.NormalDouble(positions.Length * heads * headDim, 12);
        double[] cotangent = TestData.NormalDouble(x.Length, 13);

        double[] dx = RopeReference.Backward(cotangent, positions, heads, headDim, theta);
        double[] fd = FiniteDifference.VectorJacobianProduct(xx => RopeReference.Forward(xx, positions, heads, headDim, theta), x, cotangent, H);
        TensorAssert.Close(dx, fd, AbsTol, RelTol, "rope dx", [positions.Length, heads, headDim]);

        // An orthogonal rotation: the backward undoes the forward.
        double[] roundTrip = RopeReference.Backward(RopeReference.Forward(x, positions, heads, headDim, theta), positions, heads, headDim, theta);
        TensorAssert.Close(roundTrip, x, 1e-14, 1e-14, "rope backward(forward(x))");
    }

    [Test]
    public void RopeValuesByHand()
    {
        // Head dim 4: pair (0, 2) turns by pos * 100^0 = pos, pair (1, 3) by pos * 100^(-1/2) = pos / 10.
        double[] x = [1, 0, 0, 1, 1, 2, 3, 4];
        double[] output = RopeReference.Forward(x, [1, 0], 1, 4, 100);
        double[] expected = [Math.Cos(1), -Math.Sin(0.1), Math.Sin(1), Math.Cos(0.1), 1, 2, 3, 4];
        TensorAssert.Close(output, expected, 1e-15, 1e-15, "rope at positions 1 and 0", [2, 4]);
    }

    // ------------------------------------------------------------------ Attention

    [TestCase(3, 1)]
    [TestCase(4, 2)]
    [TestCase(2, 2)]
    public void AttentionBackwardMatchesFiniteDifferences(int numHeads, int numKvHeads)
    {
        const int headDim = 5;
        int[] offsets = [0, 1, 4, 9];
        int n = offsets[^1];
        double scale = 1 / Math.Sqrt(headDim);
        double[] q = TestData.NormalDouble(n * numHeads * headDim, 14, std: 1.5);
        double[] k = TestData.NormalDouble(n * numKvHeads * headDim, 15, std: 1.5);
        double[] v = TestData.NormalDouble(n * numKvHeads * headDim, 16);
        double[] cotangent = TestData.NormalDouble(q.Length, 17);

        var (dq, dk, dv) = AttentionReference.Backward(cotangent, q, k, v, offsets, numHeads, numKvHeads, headDim, scale);

        double Loss(double[] qq, double[] kk, double[] vv)
            => FiniteDifference.Dot(AttentionReference.Forward(qq, kk, vv, offsets, numHeads, numKvHeads, headDim, scale).Output, cotangent);
        AssertGradient(dq, x => Loss(x, k, v), q, "attention dq");
        AssertGradient(dk, x => Loss(q, x, v), k, "attention dk");
        AssertGradient(dv, x => Loss(q, k, x), v, "attention dv");
    }

    [Test]
    public void AttentionFirstRowOfEachSequenceSeesOnlyItselfThroughItsKvHead()
    {
        // Four query heads on two kv heads: heads 0, 1 read kv head 0 and heads 2, 3 read kv head 1 (h / group,
        // not h % kvHeads). A sequence's first row attends only to itself, so its output is that kv head's v.
        const int heads = 4, kvHeads = 2, headDim = 5;
        int qWidth = heads * headDim, kvWidth = kvHeads * headDim;
        int[] offsets = [0, 1, 4, 9];
        double scale = 1 / Math.Sqrt(headDim);
        double[] q = TestData.NormalDouble(9 * qWidth, 18);
        double[] k = TestData.NormalDouble(9 * kvWidth, 19);
        double[] v = TestData.NormalDouble(9 * kvWidth, 20);
        var (output, lse) = AttentionReference.Forward(q, k, v, offsets, heads, kvHeads, headDim, scale);
        foreach (int row in offsets[..^1])
        {
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / 2;
                TensorAssert.Close(output.AsSpan(row * qWidth + h * headDim, headDim), v.AsSpan(row * kvWidth + kvh * headDim, headDim), 1e-15, 1e-15,
                    $"output of row {row} head {h}");
                double score = scale * FiniteDifference.Dot(q[(row * qWidth + h * headDim)..(row * qWidth + (h + 1) * headDim)],
                    k[(row * kvWidth + kvh * headDim)..(row * kvWidth + (kvh + 1) * headDim)]);
                Assert.That(lse[row * heads + h], Is.EqualTo(score).Within(1e-14), $"lse of row {row} head {h}");
            }
        }
    }

    [Test]
    public void AttentionDecodeMatchesTheLastRowsOfForward()
    {
        const int heads = 4, kvHeads = 2, headDim = 3, maxLength = 6;
        int qWidth = heads * headDim, kvWidth = kvHeads * headDim;
        int[] offsets = [0, 1, 4, 9];
        double scale = 0.8;
        double[] q = TestData.NormalDouble(9 * qWidth, 21);
        double[] k = TestData.NormalDouble(9 * kvWidth, 22);
        double[] v = TestData.NormalDouble(9 * kvWidth, 23);
        double[] full = AttentionReference.Forward(q, k, v, offsets, heads, kvHeads, headDim, scale).Output;

        // Sequence 1 (rows 1..3) in slot 0, sequence 2 (rows 4..8) in slot 2; NaN everywhere else proves decode
        // reads only positions below its length and only its own slot.
        const int slots = 3;
        double[] keyCache = Filled(slots * maxLength * kvWidth, double.NaN);
        double[] valueCache = Filled(slots * maxLength * kvWidth, double.NaN);
        void Store(int slot, int firstRow, int count)
        {
            Array.Copy(k, firstRow * kvWidth, keyCache, slot * maxLength * kvWidth, count * kvWidth);
            Array.Copy(v, firstRow * kvWidth, valueCache, slot * maxLength * kvWidth, count * kvWidth);
        }
        Store(0, 1, 3);
        Store(2, 4, 5);

        int[] rows = [8, 3, 6];
        int[] cacheSlots = [2, 0, 2];
        int[] lengths = [5, 3, 3];
        double[] decodeQ = rows.SelectMany(r => q[(r * qWidth)..((r + 1) * qWidth)]).ToArray();
        double[] decoded = AttentionReference.Decode(decodeQ, keyCache, valueCache, cacheSlots, lengths, maxLength, heads, kvHeads, headDim, scale);
        double[] expected = rows.SelectMany(r => full[(r * qWidth)..((r + 1) * qWidth)]).ToArray();
        TensorAssert.Close(decoded, expected, 1e-14, 1e-13, "decode vs forward rows 8, 3, 6", [rows.Length, heads, headDim]);
    }

    // ------------------------------------------------------------------ SwiGLU

    [Test]
    public void SwiGluBackwardMatchesFiniteDifferences()
    {
        double[] gate = TestData.NormalDouble(15, 24, std: 2);
        double[] up = TestData.NormalDouble(15, 25);
        double[] cotangent = TestData.NormalDouble(15, 26);
        var (dGate, dUp) = SwiGluReference.Backward(cotangent, gate, up);
        AssertGradient(dGate, g => FiniteDifference.Dot(SwiGluReference.Forward(g, up), cotangent), gate, "swiglu dGate");
        AssertGradient(dUp, u => FiniteDifference.Dot(SwiGluReference.Forward(gate, u), cotangent), up, "swiglu dUp");
    }

    [Test]
    public void SwiGluValuesByHand()
    {
        double[] output = SwiGluReference.Forward([0, 1, -40, 40], [5, 2, 1, 0.5]);
        TensorAssert.Close(output, [0, 2 / (1 + Math.Exp(-1)), -40 * Math.Exp(-40), 20], 1e-15, 1e-12, "silu(g) * u");
    }

    // ------------------------------------------------------------------ log-prob and entropy

    [TestCase(true)]
    [TestCase(false)]
    public void LogProbBackwardMatchesFiniteDifferences(bool withEntropyGradient)
    {
        const int rows = 3, dim = 5, vocab = 11;
        const double temperature = 0.7;
        int[] targets = [3, 0, 10];
        double[] hidden = TestData.NormalDouble(rows * dim, 27);
        double[] weight = TestData.NormalDouble(vocab * dim, 28, std: 0.8);
        double[] dLogProbs = TestData.UniformDouble(rows, 29, 0.2, 1.5);
        double[]? dEntropy = withEntropyGradient ? TestData.UniformDouble(rows, 30, -1, 1) : null;
        double[] dWeight = Filled(vocab * dim, -0.125);

        double Loss(double[] hh, double[] ww)
        {
            var (logProbs, entropy, _) = LogProbReference.Forward(hh, ww, targets, dim, vocab, temperature);
            return FiniteDifference.Dot(logProbs, dLogProbs) + (dEntropy == null ? 0 : FiniteDifference.Dot(entropy, dEntropy));
        }

        double[] dHidden = LogProbReference.Backward(dLogProbs, dEntropy, hidden, weight, targets, dim, vocab, temperature, dWeight);
        AssertGradient(dHidden, h => Loss(h, weight), hidden, "logprob dHidden");
        double[] fdWeight = FiniteDifference.Gradient(w => Loss(hidden, w), weight, H);
        TensorAssert.Close(dWeight, Plus(fdWeight, -0.125), AbsTol, RelTol, "logprob dWeight accumulated onto -0.125", [vocab, dim]);
    }

    [Test]
    public void LogProbForwardIsALogSoftmaxAndAnEntropy()
    {
        const int dim = 4, vocab = 7;
        const double temperature = 1.3;
        double[] hidden = TestData.NormalDouble(dim, 31);
        double[] weight = TestData.NormalDouble(vocab * dim, 32);
        double[] rawLogits = LogProbReference.Logits(hidden, weight, 1, dim, vocab, 1);
        double fullEntropy = LogProbReference.Forward(hidden, weight, [0], dim, vocab, temperature).Entropy[0];
        double total = 0, entropy = 0;
        for (int t = 0; t < vocab; t++)
        {
            var (logProbs, entropies, _) = LogProbReference.Forward(hidden, weight, [t], dim, vocab, temperature);
            // Cross-checks against an independent log-softmax that applies the temperature itself.
            Assert.That(logProbs[0], Is.EqualTo(SamplingReference.LogSoftmaxAt(rawLogits, t, temperature)).Within(1e-13));
            total += Math.Exp(logProbs[0]);
            entropy -= Math.Exp(logProbs[0]) * logProbs[0];
            // The entropy output does not depend on which token is the target.
            Assert.That(entropies[0], Is.EqualTo(fullEntropy).Within(1e-15));
        }
        Assert.That(total, Is.EqualTo(1).Within(1e-14));
        Assert.That(fullEntropy, Is.EqualTo(entropy).Within(1e-13));
        Assert.That(fullEntropy, Is.InRange(0.0, Math.Log(vocab)));
    }

    // ------------------------------------------------------------------ policy loss

    // (logp - oldLogp, advantage) per token, each well away from a kink of min/clip at eps_low = 0.2, eps_high = 0.28:
    // rho = 1.49 A > 0 clipped; rho = 1.49 A < 0 unclipped; rho = 0.61 A < 0 clipped; rho = 0.61 A > 0 unclipped;
    // rho = 1.05 and 0.90 inside the range; rho = 1.35 A > 0 clipped; a masked (w = 0) clipped token.
    private static readonly double[] LogRatios = [0.4, 0.4, -0.5, -0.5, 0.05, -0.1, 0.3, 0.45];
    private static readonly double[] PolicyAdvantages = [1.0, -0.8, -1.2, 0.7, 1.3, -0.6, 0.9, 1.1];
    private static readonly double[] PolicyWeights = [0.2, 0.1, 0.15, 0.05, 0.2, 0.12, 0.18, 0];
    private static readonly bool[] ExpectClipped = [true, false, true, false, false, false, true, true];

    [TestCase(0.0, 0.0)]
    [TestCase(0.01, 0.0)]
    [TestCase(0.01, 0.05)]
    [TestCase(0.0, 0.3)]
    public void PolicyLossBackwardMatchesFiniteDifferences(double entropyCoefficient, double klCoefficient)
    {
        const double clipLow = 0.2, clipHigh = 0.28;
        int count = LogRatios.Length;
        double[] oldLogProbs = TestData.UniformDouble(count, 33, -3, -0.5);
        double[] logProbs = oldLogProbs.Select((o, t) => o + LogRatios[t]).ToArray();
        double[] entropy = TestData.UniformDouble(count, 34, 0.1, 2);
        double[] referenceOffsets = TestData.UniformDouble(count, 35, -0.6, 0.6);
        double[]? reference = klCoefficient != 0 ? logProbs.Select((l, t) => l + referenceOffsets[t]).ToArray() : null;

        double Total(double[] lp, double[] ent) => GrpoReference.PolicyLossForward(lp, oldLogProbs, PolicyAdvantages, ent, PolicyWeights, reference,
            clipLow, clipHigh, entropyCoefficient, klCoefficient)[GrpoReference.Terms.Total];

        var (dLogProbs, dEntropy) = GrpoReference.PolicyLossBackward(logProbs, oldLogProbs, PolicyAdvantages, PolicyWeights, reference,
            clipLow, clipHigh, entropyCoefficient, klCoefficient);
        AssertGradient(dLogProbs, lp => Total(lp, entropy), logProbs, "policy loss dLogProbs");
        AssertGradient(dEntropy, ent => Total(logProbs, ent), entropy, "policy loss dEntropy");

        double[] terms = GrpoReference.PolicyLossForward(logProbs, oldLogProbs, PolicyAdvantages, entropy, PolicyWeights, reference,
            clipLow, clipHigh, entropyCoefficient, klCoefficient);
        double clipFraction = PolicyWeights.Where((_, t) => ExpectClipped[t]).Sum();
        Assert.That(terms[GrpoReference.Terms.ClipFraction], Is.EqualTo(clipFraction).Within(1e-15), "clip fraction");
        // Clipped low: token 2 (rho = 0.61, A < 0); clipped high: tokens 0, 6 and the masked 7 (rho > 1.28, A > 0).
        Assert.That(terms[GrpoReference.Terms.ClipFractionLow], Is.EqualTo(PolicyWeights[2]).Within(1e-15), "clip fraction low");
        Assert.That(terms[GrpoReference.Terms.ClipFractionHigh], Is.EqualTo(PolicyWeights[0] + PolicyWeights[6]).Within(1e-15), "clip fraction high");
        double ppoKl = -PolicyWeights.Select((w, t) => w * LogRatios[t]).Sum();
        Assert.That(terms[GrpoReference.Terms.PpoKl], Is.EqualTo(ppoKl).Within(1e-15), "ppo_kl = sum w (old - logp)");
        for (int t = 0; t < count; t++)
        {
            Assert.That(GrpoReference.Surrogate(logProbs[t], oldLogProbs[t], PolicyAdvantages[t], clipLow, clipHigh).Clipped,
                Is.EqualTo(ExpectClipped[t]), $"token {t} clipped");
        }
        Assert.That(terms[GrpoReference.Terms.Total], Is.EqualTo(terms[GrpoReference.Terms.PolicyGradient]
            - entropyCoefficient * terms[GrpoReference.Terms.Entropy] + klCoefficient * terms[GrpoReference.Terms.Kl]).Within(1e-15));
        if (klCoefficient == 0) Assert.That(terms[GrpoReference.Terms.Kl], Is.Zero);
        else Assert.That(terms[GrpoReference.Terms.Kl], Is.GreaterThan(0), "k3 is positive unless ref = logp everywhere");
    }

    [Test]
    public void PolicyLossValuesByHand()
    {
        // On-policy token: rho = 1, A = 2, w = 0.5, H = 3, alpha = 0.1: PG = -1, Entropy = 1.5, Total = -1.15.
        double[] terms = GrpoReference.PolicyLossForward([-1.0], [-1.0], [2.0], [3.0], [0.5], [-1.0], 0.2, 0.2, 0.1, 0.7);
        TensorAssert.Close(terms, [-1.15, -1, 1.5, 0, 0, 0, 0, 0], 1e-15, 1e-15,
            "terms: total, pg, entropy, kl, clip fraction, its low and high sides, ppo_kl");

        // rho = e^0.5 > 1.2 with A = 1: the surrogate is 1.2, its gradient 0; clipped at the upper bound; ppo_kl = 0 - 0.5.
        double[] clipped = GrpoReference.PolicyLossForward([0.5], [0.0], [1.0], [0.0], [1.0], null, 0.2, 0.2, 0, 0);
        TensorAssert.Close(clipped, [-1.2, -1.2, 0, 0, 1, 0, 1, -0.5], 1e-15, 1e-15, "a clipped token");
        var (dClipped, _) = GrpoReference.PolicyLossBackward([0.5], [0.0], [1.0], [1.0], null, 0.2, 0.2, 0, 0);
        Assert.That(dClipped[0], Is.Zero);
    }

    [Test]
    public void K3ClampsFollowVerlLowVarKl()
    {
        // Gaps d = ref - logp: inside both clamps the value is exp(d) - d - 1 and the gradient 1 - exp(d).
        Assert.That(GrpoReference.K3(0.5), Is.EqualTo(Math.Exp(0.5) - 1.5).Within(1e-15));
        Assert.That(GrpoReference.K3Gradient(0.5), Is.EqualTo(1 - Math.Exp(0.5)).Within(1e-15));
        // k3(2.5) = 8.68 passes; k3(2.7) = 12.18 is clamped to 10 and stops the gradient; so does k3(-11.1) = 10.1.
        Assert.That(GrpoReference.K3(2.5), Is.EqualTo(Math.Exp(2.5) - 3.5).Within(1e-14));
        Assert.That(GrpoReference.K3Gradient(2.5), Is.EqualTo(1 - Math.Exp(2.5)).Within(1e-14));
        Assert.That(GrpoReference.K3(-10.9), Is.EqualTo(Math.Exp(-10.9) + 9.9).Within(1e-14));
        Assert.That(GrpoReference.K3Gradient(-10.9), Is.EqualTo(1 - Math.Exp(-10.9)).Within(1e-15));
        foreach (double gap in new[] { 2.7, -11.1, 19.9, 20, 20.1, -20, -20.1, 25, -25, 1000, -1000, double.PositiveInfinity, double.NegativeInfinity })
        {
            Assert.That(GrpoReference.K3(gap), Is.EqualTo(10), $"k3({gap})");
            Assert.That(GrpoReference.K3Gradient(gap), Is.Zero, $"dk3({gap})");
        }
        // The gradient is the derivative of the value away from the kinks (d = 2.609..., -10.99998...).
        foreach (double gap in new[] { -10.5, -3, -0.2, 0.7, 2.55 })
        {
            // k3 depends on logp through d = ref - logp, so dk3/dlogp = -dk3/dd.
            double fd = -(GrpoReference.K3(gap + 1e-6) - GrpoReference.K3(gap - 1e-6)) / 2e-6;
            Assert.That(GrpoReference.K3Gradient(gap), Is.EqualTo(fd).Within(1e-6 * (1 + Math.Abs(fd))), $"dk3 at {gap}");
        }
    }

    [Test]
    public void PolicyLossTieAtTheClipBoundaryTakesTheUnclippedGradient()
    {
        // eps_high = 0 puts rho = 1 exactly on the boundary: both branches equal 1 * A. Ties select the unclipped
        // branch, so the gradient is -w rho A (not 0) and the token does not count as clipped.
        double[] terms = GrpoReference.PolicyLossForward([-0.25], [-0.25], [1.5], [0.0], [0.4], null, 0.2, 0, 0, 0);
        Assert.That(terms[GrpoReference.Terms.ClipFraction], Is.Zero);
        Assert.That(terms[GrpoReference.Terms.PolicyGradient], Is.EqualTo(-0.6).Within(1e-15));
        var (dLogProbs, dEntropy) = GrpoReference.PolicyLossBackward([-0.25], [-0.25], [1.5], [0.4], null, 0.2, 0, 0.05, 0);
        Assert.That(dLogProbs[0], Is.EqualTo(-0.6).Within(1e-15));
        Assert.That(dEntropy[0], Is.EqualTo(-0.4 * 0.05).Within(1e-18));
    }

    // ------------------------------------------------------------------ advantages and broadcast

    [Test]
    public void AdvantagesByHand()
    {
        const double eps = 1e-6;
        // Groups: [1, 0, 1, 1] | [0.7] | [0.1, 0.1, 0.1] | (empty).
        double[] rewards = [1, 0, 1, 1, 0.7, 0.1, 0.1, 0.1];
        double[] advantages = GrpoReference.Advantages(rewards, [0, 4, 5, 8, 8], eps);
        // Group 0: mean 0.75, unbiased variance (3 * 0.25^2 + 0.75^2) / 3 = 0.25, std 0.5.
        double[] expected = [0.25 / (0.5 + eps), -0.75 / (0.5 + eps), 0.25 / (0.5 + eps), 0.25 / (0.5 + eps), 0.7 / (1 + eps), 0, 0, 0];
        TensorAssert.Close(advantages, expected, 1e-15, 1e-14, "advantages");
        // The all-equal group must be exactly 0, not rounding noise divided by epsilon.
        Assert.That(advantages[5..], Is.All.EqualTo(0.0));
    }

    [Test]
    public void AdvantagesAreStandardisedPerGroup()
    {
        int[] offsets = TestData.RandomOffsets(5, 2, 9, 36);
        double[] rewards = TestData.UniformDouble(offsets[^1], 37, 0, 1);
        double[] advantages = GrpoReference.Advantages(rewards, offsets, 1e-6);
        for (int g = 0; g + 1 < offsets.Length; g++)
        {
            double[] a = advantages[offsets[g]..offsets[g + 1]];
            double mean = a.Average();
            double std = Math.Sqrt(a.Sum(x => (x - mean) * (x - mean)) / (a.Length - 1));
            Assert.That(mean, Is.EqualTo(0).Within(1e-12), $"group {g} mean");
            Assert.That(std, Is.EqualTo(1).Within(1e-4), $"group {g} std");
        }
    }

    [Test]
    public void BroadcastSegmentsRepeatsEachValueOverItsSegment()
    {
        double[] output = GrpoReference.BroadcastSegments([1.5, -2, 7], [0, 2, 2, 5]);
        TensorAssert.Close(output, [1.5, 1.5, 7, 7, 7], 0, 0, "broadcast with an empty middle segment");
    }

    // ------------------------------------------------------------------ AdamW and global norm

    [Test]
    public void AdamWFirstStepMovesEachParameterByAboutLearningRateTimesSignOfGradient()
    {
        const double lr = 1e-3;
        double[] p = [0.5, -0.3, 0.1, 2.0];
        double[] start = (double[])p.Clone();
        double[] g = [0.3, -2, 1e-3, -0.05];
        var m = new double[4];
        var v = new double[4];
        AdamWReference.Step(p, g, m, v, step: 1, learningRate: lr, weightDecay: 0);
        for (int i = 0; i < p.Length; i++)
        {
            // |g| / (|g| + 1e-8) differs from 1 by at most 1e-5 here.
            Assert.That(p[i] - start[i], Is.EqualTo(-lr * Math.Sign(g[i])).Within(lr * 1e-4), $"parameter {i}");
            Assert.That(m[i], Is.EqualTo(0.1 * g[i]).Within(1e-15));
            Assert.That(v[i], Is.EqualTo(0.001 * g[i] * g[i]).Within(1e-15));
        }

        // A constant gradient keeps the bias-corrected moments at g and g^2, so the second step is the same size.
        AdamWReference.Step(p, g, m, v, step: 2, learningRate: lr, weightDecay: 0);
        for (int i = 0; i < p.Length; i++)
            Assert.That(p[i] - start[i], Is.EqualTo(-2 * lr * Math.Sign(g[i])).Within(lr * 2e-4), $"parameter {i} after two steps");
    }

    [Test]
    public void AdamWWeightDecayAndGradientScale()
    {
        double[] p = [1.0, -4.0];
        var zeroGradient = new double[2];
        AdamWReference.Step(p, zeroGradient, new double[2], new double[2], step: 1, learningRate: 0.01, weightDecay: 0.1);
        TensorAssert.Close(p, [1.0 * 0.999, -4.0 * 0.999], 1e-16, 1e-15, "pure decoupled decay p *= 1 - lr wd");

        double[] exempt = [1.0, -4.0];
        AdamWReference.Step(exempt, zeroGradient, new double[2], new double[2], step: 1, learningRate: 0.01, weightDecay: 0.1, applyWeightDecay: false);
        TensorAssert.Close(exempt, [1.0, -4.0], 0, 0, "exempt from decay");

        var m = new double[2];
        AdamWReference.Step([0.0, 0.0], [2.0, -6.0], m, new double[2], step: 1, learningRate: 0.01, gradientScale: 0.25);
        TensorAssert.Close(m, [0.1 * 0.5, 0.1 * -1.5], 1e-17, 1e-15, "first moment of the scaled gradient");
    }

    [Test]
    public void GlobalNormOfSeveralArrays()
    {
        Assert.That(GlobalNormReference.Norm([3.0], [4.0], []), Is.EqualTo(5).Within(1e-15));
        Assert.That(GlobalNormReference.Norm(new List<double[]> { new double[] { 1, -2 }, new double[] { 2 } }), Is.EqualTo(3).Within(1e-15));
    }

    // ------------------------------------------------------------------ sampling

    [Test]
    public void GreedyPutsAllMassOnTheLowestArgmax()
    {
        double[] logits = [1, 3, 2, 3, 0];
        TensorAssert.Close(SamplingReference.Probabilities(logits, 0), [0.0, 1, 0, 0, 0], 0, 0, "greedy");
        Assert.That(SamplingReference.LogSoftmaxAt(logits, 1, 0), Is.EqualTo(SamplingReference.LogSoftmaxAt(logits, 1, 1)), "greedy log-prob uses T = 1");
    }

    [Test]
    public void TopKKeepsTheKMostLikelyWithLowerIdsWinningTies()
    {
        double[] logits = [1, 3, 2, 3, 0];
        TensorAssert.Close(SamplingReference.Probabilities(logits, 1, topK: 2), [0.0, 0.5, 0, 0.5, 0], 1e-15, 0, "top-2");
        TensorAssert.Close(SamplingReference.Probabilities(logits, 1, topK: 1), [0.0, 1, 0, 0, 0], 0, 0, "top-1");
        TensorAssert.Close(SamplingReference.Probabilities([0.0, 0, 0, 0], 1, topP: 0.5), [0.5, 0.5, 0, 0], 1e-15, 0, "top-p 0.5 on a uniform row");
    }

    [Test]
    public void TopPKeepsTheSmallestNucleusAndAppliesAfterTopK()
    {
        double[] logits = [2, 1, 0, -1];
        double[] p = logits.Select(Math.Exp).ToArray();
        double sum = p.Sum();
        p = p.Select(x => x / sum).ToArray();   // 0.6439, 0.2369, 0.0871, 0.0321

        TensorAssert.Close(SamplingReference.Probabilities(logits, 1), p, 1e-15, 1e-14, "no filtering");
        TensorAssert.Close(SamplingReference.Probabilities(logits, 1, topP: 0.5), [1.0, 0, 0, 0], 1e-15, 0, "top-p 0.5");
        double two = p[0] + p[1];
        TensorAssert.Close(SamplingReference.Probabilities(logits, 1, topP: 0.8), [p[0] / two, p[1] / two, 0, 0], 1e-15, 1e-14, "top-p 0.8");
        double three = two + p[2];
        TensorAssert.Close(SamplingReference.Probabilities(logits, 1, topP: 0.9), [p[0] / three, p[1] / three, p[2] / three, 0], 1e-15, 1e-14, "top-p 0.9");
        // Top-2 renormalises to (0.731, 0.269), which alone reaches 0.7; top-p on the full row would have kept two tokens.
        TensorAssert.Close(SamplingReference.Probabilities(logits, 1, topK: 2, topP: 0.7), [1.0, 0, 0, 0], 1e-15, 0, "top-k 2 then top-p 0.7");

        double[] hot = SamplingReference.Probabilities(logits, 2);
        double[] scaled = Enumerable.Range(0, logits.Length).Select(t => Math.Exp(SamplingReference.LogSoftmaxAt(logits, t, 2))).ToArray();
        TensorAssert.Close(hot, scaled, 1e-15, 1e-14, "temperature 2 equals exp(log-softmax(z / 2))");
        Assert.That(hot[0], Is.LessThan(p[0]), "a higher temperature flattens the distribution");
    }
}
