using OR1.Grpo.Training;

namespace OR1.Tests.Training;

public sealed class EntropyControllerTests
{
    private static readonly EntropyControlOptions Options = new(Target: 0.2, Delta: 1e-3, Initial: 0, Min: 0, Max: 2.5e-3);

    [Test]
    public void ScriptedEntropySequenceMovesUpDownAndClamps()
    {
        // entropy:           0.1   0.1    0.1    0.1    0.3    0.25   0.3  0.3  0.19
        // below target:      yes   yes    yes    yes    no     no     no   no   yes
        // c after update:   1e-3  2e-3  2.5e-3 2.5e-3 1.5e-3  0.5e-3  0    0   1e-3   (clamped to [0, 2.5e-3])
        double[] entropies = [0.1, 0.1, 0.1, 0.1, 0.3, 0.25, 0.3, 0.3, 0.19];
        double[] expectedC = [1e-3, 2e-3, 2.5e-3, 2.5e-3, 1.5e-3, 0.5e-3, 0, 0, 1e-3];
        bool[] expectedEnabled = [true, true, true, true, false, false, false, false, true];
        var state = EntropyController.Initial(Options);
        Assert.That(state.Alpha, Is.Zero, "no bonus before the first update");
        for (int k = 0; k < entropies.Length; k++)
        {
            state = EntropyController.Update(state, entropies[k], Options);
            Assert.That(state.Coefficient, Is.EqualTo(expectedC[k]).Within(1e-12), $"c after update {k}");
            Assert.That(state.Enabled, Is.EqualTo(expectedEnabled[k]), $"enabled after update {k}");
            Assert.That(state.Alpha, Is.EqualTo(expectedEnabled[k] ? expectedC[k] : 0).Within(1e-12), $"alpha after update {k}");
        }
    }

    [Test]
    public void GatingTurnsTheBonusOffAboveTargetEvenWithAPositiveCoefficient()
    {
        var state = new EntropyControlState(2e-3, Enabled: true);
        state = EntropyController.Update(state, 0.5, Options);
        Assert.That(state.Coefficient, Is.EqualTo(1e-3).Within(1e-12));
        Assert.That(state.Enabled, Is.False);
        Assert.That(state.Alpha, Is.Zero);
    }

    [Test]
    public void EntropyExactlyAtTargetCountsAsNotBelow()
    {
        var state = EntropyController.Update(new EntropyControlState(1e-3, true), 0.2, Options);
        Assert.That(state.Enabled, Is.False);
        Assert.That(state.Coefficient, Is.EqualTo(0).Within(1e-12));
    }

    [Test]
    public void RecipeDefaultsMatchThePaper()
    {
        var defaults = new EntropyControlOptions();
        Assert.That((defaults.Target, defaults.Delta, defaults.Initial, defaults.Min, defaults.Max), Is.EqualTo((0.2, 1e-4, 0.0, 0.0, 5e-3)));
    }

    [Test]
    public void NonFiniteEntropyIsRejected() =>
        Assert.That(() => EntropyController.Update(default, double.NaN, Options), Throws.ArgumentException);
}
