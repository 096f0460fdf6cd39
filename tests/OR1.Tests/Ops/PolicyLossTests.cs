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
            Assert.That(dlp, Is.EqualTo(expectedGrad).Within(1e-5));
            Assert.That(dent, Is.All.EqualTo(0f));
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
