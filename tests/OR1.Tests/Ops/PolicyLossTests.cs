using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class PolicyLossTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private (float[] Terms, float[] DLogProbs, float[] DEntropy) Run(float[] logProbs, float[] oldLogProbs, float[] advantages,
        float[] entropy, float[] weights, PolicyLossOptions options, float[]? reference = null)
    {
        int t = logProbs.Length;
        var lp = Floats(logProbs, t);
        var old = Floats(oldLogProbs, t);
        var adv = Floats(advantages, t);
        var ent = Floats(entropy, t);
        var w = Floats(weights, t);
        var refLp = reference is null ? null : Floats(reference, t);
        var terms = Poisoned(PolicyLossTerms.Count);
        var dlp = Poisoned(t);
        var dent = Poisoned(t);
        Backend.PolicyLossForward(lp, old, adv, ent, w, refLp, options, terms);
        Backend.PolicyLossBackward(lp, old, adv, w, refLp, options, dlp, dent);
        return (terms.ToFloats(), dlp.ToFloats(), dent.ToFloats());
    }

    /// <summary>
    /// Both clip boundaries (0.8 and 1.2 with eps 0.2), each approached from inside and outside, with
    /// A = +2 and A = -2. Expected surrogates min(rho A, clip(rho) A) and gradients by hand:
    ///   rho  A   rho*A  clip*A  surrogate  clipped  d(-w S)/dlogp
    ///  1.19 +2   2.38   2.38     2.38       no      -2.38 w
    ///  1.21 +2   2.42   2.40     2.40       yes      0
    ///  1.19 -2  -2.38  -2.38    -2.38       no      +2.38 w
    ///  1.21 -2  -2.42  -2.40    -2.42       no      +2.42 w
    ///  0.79 +2   1.58   1.60     1.58       no      -1.58 w
    ///  0.81 +2   1.62   1.62     1.62       no      -1.62 w
    ///  0.79 -2  -1.58  -1.60    -1.60       yes      0
    ///  0.81 -2  -1.62  -1.62    -1.62       no      +1.62 w
    /// </summary>
    [Test]
    public void ClipBoundariesWithPositiveAndNegativeAdvantages()
    {
        float[] rho = [1.19f, 1.21f, 1.19f, 1.21f, 0.79f, 0.81f, 0.79f, 0.81f];
        float[] adv = [2, 2, -2, -2, 2, 2, -2, -2];
        float[] logp = rho.Select(r => MathF.Log(r)).ToArray();
        float[] old = new float[8];
        float w = 1f / 8;
        var (terms, dlp, dent) = Run(logp, old, adv, new float[8], Enumerable.Repeat(w, 8).ToArray(), new PolicyLossOptions(0.2f, 0.2f));

        double[] surrogate = [2.38, 2.40, -2.38, -2.42, 1.58, 1.62, -1.60, -1.62];
        double[] expectedGrad = [-2.38 * w, 0, 2.38 * w, 2.42 * w, -1.58 * w, -1.62 * w, 0, 1.62 * w];
        Assert.Multiple(() =>
        {
            Assert.That(terms[PolicyLossTerms.PolicyGradient], Is.EqualTo(-surrogate.Sum() * w).Within(1e-5));
            Assert.That(terms[PolicyLossTerms.Total], Is.EqualTo(-surrogate.Sum() * w).Within(1e-5));
            Assert.That(terms[PolicyLossTerms.ClipFraction], Is.EqualTo(2.0 / 8).Within(1e-7));
            // rho = 1.21 with A > 0 hit the upper bound, rho = 0.79 with A < 0 the lower one.
            Assert.That(terms[PolicyLossTerms.ClipFractionLow], Is.EqualTo(1.0 / 8).Within(1e-7));
            Assert.That(terms[PolicyLossTerms.ClipFractionHigh], Is.EqualTo(1.0 / 8).Within(1e-7));
            Assert.That(terms[PolicyLossTerms.PpoKl], Is.EqualTo(-logp.Sum(l => (double)l) * w).Within(1e-7));
            Assert.That(dlp, Is.EqualTo(expectedGrad).Within(1e-5));
            Assert.That(dent, Is.All.EqualTo(0f));
        });
    }

    /// <summary>
    /// Old log-probs put a known set of tokens outside the clip range [0.8, 1.28] on each side; log-ratios are
    /// exact in fp32, so ppo_kl = -sum w (logp - old) is known exactly too:
    ///   logp - old   rho    A     w     clipped
    ///    0.5        1.65   +1   0.10    high
    ///    0.5        1.65   -1   0.05    no   (rho A = -1.65 &lt; 1.28 A)
    ///   -0.75       0.47   -1   0.20    low
    ///   -0.75       0.47   +1   0.15    no   (rho A = 0.47 &lt; 0.8 A)
    ///    0          1      +1   0.10    no
    ///    0.375      1.45   +2   0.30    high
    ///   -0.5        0.61   -0.5 0.10    low
    ///   -0.25       0.78   -3   0       low, but masked
    /// Low = 0.3, High = 0.4, ClipFraction = 0.7, ppo_kl = -(0.05 + 0.025 - 0.15 - 0.1125 + 0.1125 - 0.05) = 0.125.
    /// </summary>
    [Test]
    public void ClipFractionsOnEachSideAndPpoKlByHand()
    {
        float[] logRatio = [0.5f, 0.5f, -0.75f, -0.75f, 0f, 0.375f, -0.5f, -0.25f];
        float[] adv = [1, -1, -1, 1, 1, 2, -0.5f, -3];
        float[] w = [0.1f, 0.05f, 0.2f, 0.15f, 0.1f, 0.3f, 0.1f, 0];
        float[] old = Enumerable.Repeat(-2f, 8).ToArray();
        float[] logp = logRatio.Select(r => -2f + r).ToArray();
        var (terms, dlp, _) = Run(logp, old, adv, new float[8], w, new PolicyLossOptions(0.2f, 0.28f));
        Assert.Multiple(() =>
        {
            Assert.That(terms[PolicyLossTerms.ClipFractionLow], Is.EqualTo(0.3).Within(1e-7), "clip fraction low");
            Assert.That(terms[PolicyLossTerms.ClipFractionHigh], Is.EqualTo(0.4).Within(1e-7), "clip fraction high");
            Assert.That(terms[PolicyLossTerms.ClipFraction], Is.EqualTo(0.7).Within(1e-7), "clip fraction");
            Assert.That(terms[PolicyLossTerms.ClipFraction],
                Is.EqualTo(terms[PolicyLossTerms.ClipFractionLow] + terms[PolicyLossTerms.ClipFractionHigh]).Within(1e-7), "low + high");
            Assert.That(terms[PolicyLossTerms.PpoKl], Is.EqualTo(0.125).Within(1e-7), "ppo_kl");
            // The new terms are reports only: the loss and its gradient are the surrogate's (0 on clipped tokens).
            Assert.That(terms[PolicyLossTerms.Total], Is.EqualTo(terms[PolicyLossTerms.PolicyGradient]));
            Assert.That(new[] { dlp[0], dlp[2], dlp[5], dlp[6], dlp[7] }, Is.All.EqualTo(0f), "clipped or masked tokens");
            Assert.That(dlp[4], Is.EqualTo(-0.1f).Within(1e-7), "rho = 1: -w A");
        });
    }

    /// <summary>
    /// verl's low_var_kl clamps d = ref - logp to [-20, 20] and k3 = exp(d) - d - 1 to [-10, 10], and torch's
    /// clamp passes the gradient only on [min, max]. Gaps at and around both clamps, and either side of
    /// k3 = 10 (d = 2.5: 8.68, d = 2.7: 12.2; d = -10.9: 9.9, d = -11.1: 10.1). ref and logp are chosen so that
    /// ref - logp is exact in fp32. Before the clamp, d = 100 made the forward Inf.
    /// </summary>
    [Test]
    public void KlIsClampedAsVerlLowVarKlAtItsBoundaries()
    {
        float[] gaps = [19.9f, 20f, 20.1f, -20f, -20.1f, 25f, -25f, 100f, -100f, 2.5f, 2.7f, -10.9f, -11.1f, 0.5f, -0.5f];
        int n = gaps.Length;
        // A positive gap puts logp below ref = 0, a negative one ref below logp = 0: either way the fp32 difference is exact.
        float[] reference = gaps.Select(d => d > 0 ? 0f : d).ToArray();
        float[] logp = gaps.Select(d => d > 0 ? -d : 0f).ToArray();
        float[] w = Enumerable.Repeat(1f / n, n).ToArray();
        const float beta = 0.5f;
        var options = new PolicyLossOptions(KlCoefficient: beta);

        static double K3(double d) => Math.Clamp(Math.Exp(Math.Clamp(d, -20, 20)) - Math.Clamp(d, -20, 20) - 1, -10, 10);
        static double K3Gradient(double d) => d >= -20 && d <= 20 && Math.Exp(d) - d - 1 <= 10 ? 1 - Math.Exp(d) : 0;

        // One token at a time: the forward's k3 of each gap.
        for (int i = 0; i < n; i++)
        {
            var (one, _, _) = Run([logp[i]], [logp[i]], [0f], [0f], [1f], options, reference: [reference[i]]);
            Assert.That(one, Has.All.Matches<float>(float.IsFinite), $"gap {gaps[i]}: loss terms finite");
            Assert.That(one[PolicyLossTerms.Kl], Is.EqualTo(K3(gaps[i])).Within(1e-6 * K3(gaps[i]) + 1e-7), $"k3 at gap {gaps[i]}");
        }

        var (terms, dlp, dent) = Run(logp, logp, new float[n], new float[n], w, options, reference);
        double expectedKl = gaps.Sum(d => K3(d)) / n;
        var expectedGrad = gaps.Select(d => (double)w[0] * beta * K3Gradient(d)).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(terms, Has.All.Matches<float>(float.IsFinite), "loss terms finite");
            Assert.That(dlp, Has.All.Matches<float>(float.IsFinite), "dlogp finite");
            Assert.That(dent, Has.All.Matches<float>(float.IsFinite), "dentropy finite");
            Assert.That(terms[PolicyLossTerms.Kl], Is.EqualTo(expectedKl).Within(1e-6 * expectedKl));
            Assert.That(terms[PolicyLossTerms.Total], Is.EqualTo(beta * expectedKl).Within(1e-6 * expectedKl));
            TensorAssert.Close(dlp, expectedGrad, 1e-9, 1e-6, "dL/dlogp");
            // Beyond either clamp the gradient is exactly zero, not merely small.
            for (int i = 0; i < n; i++)
            {
                if (K3Gradient(gaps[i]) == 0) Assert.That(dlp[i], Is.EqualTo(0f), $"gap {gaps[i]}: gradient stopped by a clamp");
                else Assert.That(dlp[i], Is.Not.EqualTo(0f), $"gap {gaps[i]}: gradient passes");
            }
        });
    }

    [Test]
    public void OnPolicyRatioOfOneIsGroupNormalisedReinforcePlusEntropyBonus()
    {
        // logp == old: rho = 1 exactly, never clipped; L = -sum w (A + alpha H); dL/dlogp = -w A; dL/dH = -w alpha.
        float[] logp = [-0.5f, -2f, -0.1f];
        float[] adv = [1.5f, -0.5f, 0.25f];
        float[] ent = [0.3f, 1.2f, 0.05f];
        float[] w = [0.5f, 0.25f, 0.25f];
        const float alpha = 0.01f;
        var (terms, dlp, dent) = Run(logp, logp, adv, ent, w, new PolicyLossOptions(EntropyCoefficient: alpha));
        double pg = -(0.5 * 1.5 + 0.25 * -0.5 + 0.25 * 0.25);
        double h = 0.5 * 0.3 + 0.25 * 1.2 + 0.25 * 0.05;
        Assert.Multiple(() =>
        {
            Assert.That(terms[PolicyLossTerms.PolicyGradient], Is.EqualTo(pg).Within(1e-6));
            Assert.That(terms[PolicyLossTerms.Entropy], Is.EqualTo(h).Within(1e-6));
            Assert.That(terms[PolicyLossTerms.Total], Is.EqualTo(pg - alpha * h).Within(1e-6));
            Assert.That(terms[PolicyLossTerms.ClipFraction], Is.EqualTo(0f));
            Assert.That(terms[PolicyLossTerms.ClipFractionLow], Is.EqualTo(0f));
            Assert.That(terms[PolicyLossTerms.ClipFractionHigh], Is.EqualTo(0f));
            Assert.That(terms[PolicyLossTerms.PpoKl], Is.EqualTo(0f), "logp == old");
            Assert.That(dlp, Is.EqualTo(new[] { -0.5 * 1.5, -0.25 * -0.5, -0.25 * 0.25 }).Within(1e-7));
            Assert.That(dent, Is.EqualTo(new[] { -0.5 * alpha, -0.25 * alpha, -0.25 * alpha }).Within(1e-9));
        });
    }

    [Test]
    public void ZeroWeightTokensContributeNothing()
    {
        var (terms, dlp, dent) = Run([-1f, -3f], [-1.5f, -1f], [1f, -7f], [0.5f, 9f], [1f, 0f], new PolicyLossOptions(EntropyCoefficient: 0.1f));
        Assert.Multiple(() =>
        {
            Assert.That(dlp[1], Is.EqualTo(0f));
            Assert.That(dent[1], Is.EqualTo(0f));
            Assert.That(terms[PolicyLossTerms.Entropy], Is.EqualTo(0.5f).Within(1e-7));
        });
    }

    [Test]
    public void KlPenaltyUsesK3Estimator()
    {
        // k3 = exp(ref - logp) - (ref - logp) - 1; with ref - logp = 0.5: e^0.5 - 1.5
        const float beta = 0.1f;
        var (terms, dlp, _) = Run([-1f], [-1f], [0f], [0f], [1f], new PolicyLossOptions(KlCoefficient: beta), reference: [-0.5f]);
        double k3 = Math.Exp(0.5) - 1.5;
        Assert.Multiple(() =>
        {
            Assert.That(terms[PolicyLossTerms.Kl], Is.EqualTo(k3).Within(1e-6));
            Assert.That(terms[PolicyLossTerms.Total], Is.EqualTo(beta * k3).Within(1e-6));
            // d k3 / dlogp = 1 - exp(ref - logp)
            Assert.That(dlp[0], Is.EqualTo(beta * (1 - Math.Exp(0.5))).Within(1e-6));
        });
    }

    [Test]
    public void KlWithoutReferenceLogProbsIsRejected()
    {
        var x = Zeros(2);
        var e = Assert.Throws<ArgumentException>(() =>
            Backend.PolicyLossForward(x, x, x, x, x, null, new PolicyLossOptions(KlCoefficient: 0.1f), Zeros(PolicyLossTerms.Count)))!;
        Assert.That(e.Message, Does.Contain("PolicyLossForward").And.Contain("referenceLogProbs"));
    }
}
