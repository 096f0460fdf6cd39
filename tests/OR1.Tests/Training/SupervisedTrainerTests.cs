using OR1.Grpo.Training;
using OR1.Model;
using OR1.Native.Cpu;
using OR1.Tests.Model;

namespace OR1.Tests.Training;

public sealed class SupervisedTrainerTests
{
    [Test]
    public void CrossEntropyFallsWhenMemorisingAFewSequences()
    {
        using var backend = new CpuBackend(threads: 2);
        using var model = new Qwen2Model(backend, TinyModels.Config(tied: true));
        model.Weights.InitializeRandom(3);
        using var trainer = new SupervisedTrainer(model);
        SupervisedExample[] batch = [new([1, 2], [3, 4, 5, 6]), new([7], [8, 9, 10]), new([11, 12, 13], [14])];
        double first = trainer.Step(batch, 1e-2);
        Assert.That(first, Is.EqualTo(Math.Log(37)).Within(0.2), "a near-uniform random model starts at about ln(vocab)");
        double last = first;
        for (int i = 0; i < 60; i++) last = trainer.Step(batch, 1e-2);
        Assert.That(last, Is.LessThan(0.2 * first), $"loss went from {first:F3} to {last:F3}");
        Assert.That(trainer.Steps, Is.EqualTo(61));
    }

    [Test]
    public void CosineScheduleWarmsUpThenDecays()
    {
        Assert.That(SupervisedTrainer.CosineLearningRate(0, 100, 1.0, 0.1, warmup: 10), Is.EqualTo(0.1).Within(1e-12));
        Assert.That(SupervisedTrainer.CosineLearningRate(9, 100, 1.0, 0.1, warmup: 10), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(SupervisedTrainer.CosineLearningRate(10, 100, 1.0, 0.1, warmup: 10), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(SupervisedTrainer.CosineLearningRate(55, 100, 1.0, 0.1, warmup: 10), Is.EqualTo(0.55).Within(1e-12));
        Assert.That(SupervisedTrainer.CosineLearningRate(100, 100, 1.0, 0.1, warmup: 10), Is.EqualTo(0.1).Within(1e-12));
    }
}
