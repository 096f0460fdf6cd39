using OR1.Grpo.Training;
using OR1.Model;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Model;
using OR1.Tests.Support;

namespace OR1.Tests.Training;

/// <summary>The optimizer piece both trainers share: clip by the global norm, AdamW, and nothing at all on a non-finite gradient.</summary>
public sealed class AdamWOptimizerTests
{
    private CpuBackend _backend = null!;

    [OneTimeSetUp]
    public void Create() => _backend = new CpuBackend(threads: 2);

    [OneTimeTearDown]
    public void Destroy() => _backend.Dispose();

    private static float[] All(Qwen2Weights weights) => weights.Named.SelectMany(p => p.Tensor.ToFloats()).ToArray();

    [Test]
    public void ClipsByTheGlobalNorm_AndCountsSteps()
    {
        using var model = new Qwen2Model(_backend, TinyModels.Config(tied: false));
        TinyModels.Randomize(model.Weights, 3);
        using var optimizer = new AdamWOptimizer(model);
        TinyModels.Randomize(optimizer.Gradients, 4);
        double norm = Math.Sqrt(All(optimizer.Gradients).Sum(g => (double)g * g));
        float reported = optimizer.Step(new AdamWOptions(1e-3), maxGradNorm: 1.0);
        Assert.Multiple(() =>
        {
            Assert.That(reported, Is.EqualTo(norm).Within(norm * 1e-5));
            Assert.That(optimizer.LastClipScale, Is.EqualTo((float)(1.0 / (norm + 1e-6))).Within(1e-6), "norm > 1: scaled down to 1");
            Assert.That(optimizer.Steps, Is.EqualTo(1));
        });
        optimizer.Step(new AdamWOptions(1e-3), maxGradNorm: 1e9);
        Assert.That(optimizer.LastClipScale, Is.EqualTo(1f), "a norm under the limit is not scaled");
        Assert.That(optimizer.Steps, Is.EqualTo(2));
    }

    [Test]
    public void NonFiniteGradient_ChangesNothing()
    {
        using var model = new Qwen2Model(_backend, TinyModels.Config(tied: false));
        TinyModels.Randomize(model.Weights, 3);
        using var optimizer = new AdamWOptimizer(model);
        TinyModels.Randomize(optimizer.Gradients, 4);
        optimizer.Step(new AdamWOptions(1e-3), maxGradNorm: 1.0);
        float scale = optimizer.LastClipScale;
        var weights = All(model.Weights);
        var moments = All(optimizer.FirstMoment!).Concat(All(optimizer.SecondMoment!)).ToArray();

        var poisoned = optimizer.Gradients.Named[0].Tensor;
        var values = poisoned.ToFloats();
        values[values.Length / 2] = float.NaN;
        _backend.Upload<float>(values, poisoned);
        Assert.That(() => optimizer.Step(new AdamWOptions(1e-3), maxGradNorm: 1.0),
            Throws.InvalidOperationException.With.Message.Contains("NaN").And.Message.Contains("not applied"));
        Assert.Multiple(() =>
        {
            Assert.That(optimizer.LastClipScale, Is.EqualTo(scale), "set only after the finiteness check");
            Assert.That(optimizer.Steps, Is.EqualTo(1));
            Assert.That(All(model.Weights), Is.EqualTo(weights));
            Assert.That(All(optimizer.FirstMoment!).Concat(All(optimizer.SecondMoment!)).ToArray(), Is.EqualTo(moments));
        });
    }
}
