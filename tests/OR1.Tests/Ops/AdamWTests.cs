using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class AdamWHandTraceTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>
    /// Two steps of torch.optim.AdamW (lr 0.1, betas 0.9/0.999, eps 1e-8, weight decay 0.01), by hand:
    /// element 0: p = 1, g = 0.5 then -0.25.
    ///   step 1: p = 1 * (1 - 0.001) = 0.999; m = 0.05; v = 0.00025; bc1 = 0.1; bc2 = 0.001
    ///           p -= (0.1 / 0.1) * 0.05 / (sqrt(0.00025) / sqrt(0.001) + 1e-8) = 0.05 / 0.50000001 → 0.899000002
    ///   step 2: p = 0.899000002 * 0.999 = 0.898101002; m = 0.02; v = 0.00031225; bc1 = 0.19; bc2 = 0.001999
    ///           p -= (0.1 / 0.19) * 0.02 / (sqrt(0.00031225) / sqrt(0.001999) + 1e-8) = 0.0266337 → 0.871467299
    /// element 1: p = -2, g = 0 then 4 (a zero gradient still decays; the first moment starts at zero).
    ///   step 1: p = -1.998 (decay only; m = v = 0)
    ///   step 2: p = -1.996002; m = 0.4; v = 0.016; p -= (0.1 / 0.19) * 0.4 / (sqrt(0.016 / 0.001999) + 1e-8) → -2.070415682
    /// </summary>
    [Test]
    public void TwoStepsMatchTorchFormula()
    {
        var p = Floats([1f, -2f], 2);
        var g = Zeros(2);
        var m = Zeros(2);
        var v = Zeros(2);
        var options = new AdamWOptions(0.1, 0.9, 0.999, 1e-8, 0.01);
        AdamWSlot[] slots = [new(p, g, m, v)];

        Backend.Upload<float>([0.5f, 0f], g);
        Backend.AdamWStep(slots, options, step: 1, gradientScale: 1f);
        Assert.That(p.ToFloats(), Is.EqualTo(new[] { 0.899000002, -1.998 }).Within(2e-7));

        Backend.Upload<float>([-0.25f, 4f], g);
        Backend.AdamWStep(slots, options, step: 2, gradientScale: 1f);
        Assert.Multiple(() =>
        {
            Assert.That(p.ToFloats(), Is.EqualTo(new[] { 0.871467299, -2.070415682 }).Within(5e-7));
            Assert.That(m.ToFloats(), Is.EqualTo(new[] { 0.02, 0.4 }).Within(1e-7));
            Assert.That(v.ToFloats(), Is.EqualTo(new[] { 0.00031225, 0.016 }).Within(1e-9));
        });
    }

    [Test]
    public void GradientScaleIsAppliedBeforeTheMoments()
    {
        // Clipping by 0.5 a gradient of 2 must act exactly like a gradient of 1.
        var p1 = Floats([3f], 1); var g1 = Floats([2f], 1); var m1 = Zeros(1); var v1 = Zeros(1);
        var p2 = Floats([3f], 1); var g2 = Floats([1f], 1); var m2 = Zeros(1); var v2 = Zeros(1);
        var options = new AdamWOptions(0.01);
        Backend.AdamWStep([new AdamWSlot(p1, g1, m1, v1)], options, 1, 0.5f);
        Backend.AdamWStep([new AdamWSlot(p2, g2, m2, v2)], options, 1, 1f);
        Assert.That(p1.ToFloats(), Is.EqualTo(p2.ToFloats()));
        Assert.That(v1.ToFloats(), Is.EqualTo(v2.ToFloats()));
    }

    [Test]
    public void WeightDecayCanBeDisabledPerTensor()
    {
        var p = Floats([5f], 1);
        Backend.AdamWStep([new AdamWSlot(p, Zeros(1), Zeros(1), Zeros(1), ApplyWeightDecay: false)], new AdamWOptions(0.1, WeightDecay: 0.5), 1, 1f);
        Assert.That(p.ToFloats()[0], Is.EqualTo(5f));
    }
}
