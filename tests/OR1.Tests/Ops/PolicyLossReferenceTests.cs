using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class PolicyLossReferenceTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    [TestCase(1, 0f, 0f)]
    [TestCase(37, 0.003f, 0f)]
    [TestCase(1000, 0.005f, 0.05f)]
    [TestCase(100_003, 0.005f, 0.05f)] // several ranges on the Cpu backend's threads (a 16K-context batch has millions)
    public void RandomTokensMatchReference(int t, float entropyCoef, float klCoef)
    {
        SkipIfLarge(t > 10_000, $"{t} tokens");
        var logp = TestData.Uniform(t, 1, -3, 0);
        var old = logp.Zip(TestData.Uniform(t, 2, -0.4f, 0.4f), (a, b) => a + b).ToArray();
        var adv = TestData.Uniform(t, 3, -2, 2);
        var ent = TestData.Uniform(t, 4, 0, 2);
        var w = TestData.Uniform(t, 5, 0, 2f / t);
        var reference = TestData.Uniform(t, 6, -3, 0);
        var options = new PolicyLossOptions(0.2f, 0.28f, entropyCoef, klCoef);
        var lp = Floats(logp, t);
        var terms = Poisoned(PolicyLossTerms.Count);
        var refTensor = Floats(reference, t);
        Backend.PolicyLossForward(lp, Floats(old, t), Floats(adv, t), Floats(ent, t), Floats(w, t), refTensor, options, terms);
        var expected = GrpoReference.PolicyLossForward(TestData.ToDouble(logp), TestData.ToDouble(old), TestData.ToDouble(adv), TestData.ToDouble(ent),
            TestData.ToDouble(w), TestData.ToDouble(reference), 0.2, 0.28, entropyCoef, klCoef);
        var actual = terms.ToFloats();
        TensorAssert.Close(actual, expected, Tol(1e-5), Tol(1e-4), "loss terms");
        if (t >= 1000)
        {
            // Ratios in [e^-0.4, e^0.4] against [0.8, 1.28] and advantages of both signs: both sides clip, and
            // gaps ref - logp up to 3 put some tokens beyond k3 = 10 (d > 2.61); the terms compared are not trivial.
            Assert.That(expected[GrpoReference.Terms.ClipFractionLow], Is.GreaterThan(0.01), "reference clips low");
            Assert.That(expected[GrpoReference.Terms.ClipFractionHigh], Is.GreaterThan(0.01), "reference clips high");
            Assert.That(Math.Abs(expected[GrpoReference.Terms.PpoKl]), Is.GreaterThan(1e-4), "reference ppo_kl");
            Assert.That(actual[PolicyLossTerms.ClipFraction],
                Is.EqualTo(actual[PolicyLossTerms.ClipFractionLow] + actual[PolicyLossTerms.ClipFractionHigh]).Within(1e-6), "low + high");
        }

        var dlp = Poisoned(t);
        var dent = Poisoned(t);
        Backend.PolicyLossBackward(lp, Floats(old, t), Floats(adv, t), Floats(w, t), refTensor, options, dlp, dent);
        var (refDlp, refDent) = GrpoReference.PolicyLossBackward(TestData.ToDouble(logp), TestData.ToDouble(old), TestData.ToDouble(adv),
            TestData.ToDouble(w), TestData.ToDouble(reference), 0.2, 0.28, entropyCoef, klCoef);
        TensorAssert.Close(dlp.ToFloats(), refDlp, Tol(1e-6), Tol(1e-4), "dLoss/dlogp");
        TensorAssert.Close(dent.ToFloats(), refDent, Tol(1e-9), Tol(1e-5), "dLoss/dentropy");
    }

    /// <summary>
    /// Gaps ref - logp spread over [-30, 30]: most tokens are beyond a clamp of verl's low_var_kl (|d| &gt; 20 or
    /// k3 &gt; 10), where the forward must stay finite and the gradient be 0, as in the reference.
    /// </summary>
    [TestCase(1000)]
    [TestCase(100_003)]
    public void WideReferenceGapsAreClampedAsInTheReference(int t)
    {
        SkipIfLarge(t > 10_000, $"{t} tokens");
        var logp = TestData.Uniform(t, 21, -40, 0);
        var old = logp.Zip(TestData.Uniform(t, 22, -0.4f, 0.4f), (a, b) => a + b).ToArray();
        var adv = TestData.Uniform(t, 23, -2, 2);
        var ent = TestData.Uniform(t, 24, 0, 2);
        var w = TestData.Uniform(t, 25, 0, 2f / t);
        var reference = logp.Zip(TestData.Uniform(t, 26, -30, 30), (a, b) => a + b).ToArray();
        var options = new PolicyLossOptions(0.2f, 0.28f, 0.005f, 0.1f);
        var lp = Floats(logp, t);
        var refTensor = Floats(reference, t);
        var terms = Poisoned(PolicyLossTerms.Count);
        Backend.PolicyLossForward(lp, Floats(old, t), Floats(adv, t), Floats(ent, t), Floats(w, t), refTensor, options, terms);
        var expected = GrpoReference.PolicyLossForward(TestData.ToDouble(logp), TestData.ToDouble(old), TestData.ToDouble(adv), TestData.ToDouble(ent),
            TestData.ToDouble(w), TestData.ToDouble(reference), 0.2, 0.28, 0.005, 0.1);
        TensorAssert.Close(terms.ToFloats(), expected, Tol(1e-5), Tol(1e-4), "loss terms");

        var dlp = Poisoned(t);
        var dent = Poisoned(t);
        Backend.PolicyLossBackward(lp, Floats(old, t), Floats(adv, t), Floats(w, t), refTensor, options, dlp, dent);
        var (refDlp, _) = GrpoReference.PolicyLossBackward(TestData.ToDouble(logp), TestData.ToDouble(old), TestData.ToDouble(adv),
            TestData.ToDouble(w), TestData.ToDouble(reference), 0.2, 0.28, 0.005, 0.1);
        var actualDlp = dlp.ToFloats();
        // Most of the gradient here is the clamped KL's zero: compare absolutely at the scale of w beta (1 - e^2.6).
        TensorAssert.Close(actualDlp, refDlp, Tol(1e-6) * 2f / t * 20, Tol(1e-4), "dLoss/dlogp");
        int stopped = Enumerable.Range(0, t).Count(i => GrpoReference.K3Gradient((double)reference[i] - logp[i]) == 0);
        Assert.That(stopped, Is.GreaterThan(t / 2), "most tokens are beyond a clamp");
    }

    [Test]
    public void BackwardMatchesFiniteDifferencesOfForward()
    {
        const int t = 40;
        var logp = TestData.Uniform(t, 11, -3, 0);
        // Ratios spread over [e^-0.5, e^0.5] so that both clipped and unclipped tokens occur; the check is
        // directional and rejects kinks only if a perturbation crosses one, which a step of 1e-3 rarely does.
        var old = logp.Zip(TestData.Uniform(t, 12, -0.5f, 0.5f), (a, b) => a + b).ToArray();
        var adv = TestData.Uniform(t, 13, -2, 2);
        var ent = TestData.Uniform(t, 14, 0, 2);
        var w = Enumerable.Repeat(1f / t, t).ToArray();
        var reference = TestData.Uniform(t, 15, -3, 0);
        var options = new PolicyLossOptions(0.2f, 0.2f, 0.01f, 0.1f);
        // The k3 clamp is a kink at k3 = 10 (d = ref - logp = 2.609 or -10.99998): no probe may cross it. Tokens
        // beyond it (constant 10, zero gradient) are fine and are checked too.
        for (int i = 0; i < t; i++)
        {
            double gap = (double)reference[i] - logp[i];
            Assert.That(Math.Abs(Math.Exp(gap) - gap - 1 - 10), Is.GreaterThan(0.5), $"token {i}: gap {gap} is near the k3 clamp");
        }
        double Loss(float[] lps, float[] ents)
        {
            var terms = Zeros(PolicyLossTerms.Count);
            Backend.PolicyLossForward(Floats(lps, t), Floats(old, t), Floats(adv, t), Floats(ents, t), Floats(w, t), Floats(reference, t), options, terms);
            return terms.ToFloats()[PolicyLossTerms.Total];
        }
        var dlp = Zeros(t);
        var dent = Zeros(t);
        Backend.PolicyLossBackward(Floats(logp, t), Floats(old, t), Floats(adv, t), Floats(w, t), Floats(reference, t), options, dlp, dent);
        FloatGradientCheck.Directional(lps => Loss(lps, ent), logp, dlp.ToFloats(), "policy loss dlogp", h: 1e-3, relTol: 5e-3);
        FloatGradientCheck.Directional(ents => Loss(logp, ents), ent, dent.ToFloats(), "policy loss dentropy", h: 1e-2, relTol: 5e-3);
    }
}
