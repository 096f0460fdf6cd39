using OR1.Grpo.Training;
using OR1.Model;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Model;
using OR1.Tests.Support;

namespace OR1.Tests.Training;

public sealed class MagicTrainerTests
{
    private CpuBackend _backend = null!;

    [OneTimeSetUp]
    public void Create() => _backend = new CpuBackend(threads: 2);

    [OneTimeTearDown]
    public void Destroy() => _backend.Dispose();

    private static RolloutSample S(string group, int[] prompt, int[] response, double reward, bool truncated = false) =>
        new(group, prompt, response, reward, truncated);

    /// <summary>Two informative groups, one all-correct group (dropped), one all-wrong group (dropped).</summary>
    private static RolloutSample[] Batch() =>
    [
        S("a", [1, 2, 3], [4, 5, 6], 1), S("a", [1, 2, 3], [7], 0), S("a", [1, 2, 3], [8, 9], 0),
        S("b", [10, 11], [12, 13, 14, 15], 0), S("b", [10, 11], [16, 17], 1),
        S("c", [20], [21, 22], 1), S("c", [20], [23], 1),
        S("d", [30, 31], [32], 0), S("d", [30, 31], [33, 34], 0),
    ];

    private (Qwen2Model Model, MagicTrainer Trainer) Create(MagicOptions options, int seed = 1)
    {
        var model = new Qwen2Model(_backend, TinyModels.Config(tied: false));
        TinyModels.Randomize(model.Weights, seed);
        return (model, new MagicTrainer(model, options));
    }

    /// <summary>
    /// With lr = 0 the trainer's gradient buffers hold dL/dθ of the MAGIC loss. On-policy (rho = 1) that is
    /// -sum_t w_t (A_t ∇logp_t + alpha ∇H_t) with w_t = 1/T_k over the kept groups' response tokens and
    /// A from the group rewards; here it is rebuilt by hand, independently of the trainer's plumbing.
    /// </summary>
    [Test]
    public void OnPolicyGradientIsGroupNormalisedReinforcePlusEntropyBonus()
    {
        const double alpha = 0.01;
        var options = new MagicOptions { LearningRate = 0, FixedEntropyCoefficient = alpha, MicroBatchTokens = 1000 };
        var (model, trainer) = Create(options);
        using var _ = model;
        using var __ = trainer;
        var metrics = trainer.Step(Batch());
        Assert.That(metrics.Skipped, Is.False);
        Assert.That(metrics.KeptGroups, Is.EqualTo(2));
        Assert.That(metrics.KeptTokens, Is.EqualTo(3 + 1 + 2 + 4 + 2));

        // By hand: group a rewards (1, 0, 0): mean 1/3, std sqrt(1/3); group b (0, 1): mean 1/2, std sqrt(1/2).
        double sa = Math.Sqrt(1.0 / 3) + 1e-6, sb = Math.Sqrt(0.5) + 1e-6;
        double[] adv = [(1 - 1.0 / 3) / sa, (0 - 1.0 / 3) / sa, (0 - 1.0 / 3) / sa, -0.5 / sb, 0.5 / sb];
        int[][] sequences = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 7], [1, 2, 3, 8, 9], [10, 11, 12, 13, 14, 15], [10, 11, 16, 17]];
        int[] promptLengths = [3, 3, 3, 2, 2];
        int total = sequences.Sum(s => s.Length), kept = 12;
        var targets = new int[total];
        var dLogProbs = new float[total];
        var dEntropy = new float[total];
        for (int s = 0, at = 0; s < sequences.Length; s++)
            for (int p = 0; p < sequences[s].Length; p++, at++)
            {
                targets[at] = p + 1 < sequences[s].Length ? sequences[s][p + 1] : 0;
                bool predictsResponse = p >= promptLengths[s] - 1 && p + 1 < sequences[s].Length;
                if (!predictsResponse) continue;
                dLogProbs[at] = (float)(-adv[s] / kept);
                dEntropy[at] = (float)(-alpha / kept);
            }
        using var expected = new Qwen2Weights(_backend, model.Config);
        using var batch = PackedBatch.Create(_backend, sequences);
        using var act = new Qwen2Activations(_backend, model.Config, total);
        using var tt = _backend.Ints(targets, total);
        using var lp = _backend.Zeros(total);
        using var ent = _backend.Zeros(total);
        model.Forward(batch, act);
        model.LogProbs(act, tt, 1f, lp, ent);
        using var dlp = _backend.Floats(dLogProbs, total);
        using var dent = _backend.Floats(dEntropy, total);
        model.Backward(batch, act, tt, 1f, dlp, dent, ent, expected);
        foreach (var (name, tensor) in expected.Named)
            TensorAssert.Close(trainer.Gradients[name].ToFloats(), TestData.ToDouble(tensor.ToFloats()), 1e-7, 1e-4, $"gradient of {name}");
    }

    [Test]
    public void MicroBatchingDoesNotChangeTheGradient()
    {
        float[] Gradient(int budget)
        {
            var (model, trainer) = Create(new MagicOptions { LearningRate = 0, MicroBatchTokens = budget });
            using var _ = model;
            using var __ = trainer;
            trainer.Step(Batch());
            return trainer.Gradients.Named.SelectMany(p => p.Tensor.ToFloats()).ToArray();
        }
        var whole = Gradient(1000);
        var split = Gradient(7);
        TensorAssert.Close(split, TestData.ToDouble(whole), 1e-7, 1e-4, "gradient with micro-batches of <= 7 tokens vs one micro-batch");
    }

    [Test]
    public void AllEqualGroupsSkipTheStepWithoutMovingAnything()
    {
        var (model, trainer) = Create(new MagicOptions { LearningRate = 1e-2, EntropyControl = new EntropyControlOptions(Target: 100, Delta: 1e-3) });
        using var _ = model;
        using var __ = trainer;
        var before = model.Weights.Named.SelectMany(p => p.Tensor.ToFloats()).ToArray();
        var metrics = trainer.Step([S("c", [20], [21, 22], 1), S("c", [20], [23], 1), S("d", [30], [32], 0), S("d", [30], [33], 0)]);
        Assert.Multiple(() =>
        {
            Assert.That(metrics.Skipped, Is.True);
            Assert.That(metrics.SolveAll, Is.EqualTo(1));
            Assert.That(metrics.SolveNone, Is.EqualTo(1));
            Assert.That(trainer.OptimizerSteps, Is.Zero);
            Assert.That(trainer.Controller, Is.EqualTo(EntropyController.Initial(trainer.Options.EntropyControl)));
            Assert.That(model.Weights.Named.SelectMany(p => p.Tensor.ToFloats()).ToArray(), Is.EqualTo(before));
        });
    }

    [Test]
    public void StepUpdatesWeightsControllerAndMetrics()
    {
        var options = new MagicOptions { LearningRate = 1e-2, EntropyControl = new EntropyControlOptions(Target: 100, Delta: 1e-3, Max: 1) };
        var (model, trainer) = Create(options);
        using var _ = model;
        using var __ = trainer;
        var before = model.Weights.Named.SelectMany(p => p.Tensor.ToFloats()).ToArray();
        var batch = Batch();
        var metrics = trainer.Step(batch);
        Assert.Multiple(() =>
        {
            Assert.That(trainer.OptimizerSteps, Is.EqualTo(1));
            Assert.That(model.Weights.Named.SelectMany(p => p.Tensor.ToFloats()).ToArray(), Is.Not.EqualTo(before));
            // Entropy of a random tiny model is far below a target of 100: the controller switches the bonus on.
            Assert.That(trainer.Controller, Is.EqualTo(new EntropyControlState(1e-3, true)));
            Assert.That(metrics.EntropyCoefficient, Is.Zero, "the first step used c_0 = 0");
            Assert.That(metrics.Entropy, Is.GreaterThan(0));
            Assert.That(metrics.GradNorm, Is.GreaterThan(0));
            Assert.That(metrics.RewardMean, Is.EqualTo(batch.Average(s => s.Reward)).Within(1e-12));
            Assert.That(metrics.ResponseLengthMax, Is.EqualTo(4));
            Assert.That((metrics.SolveNone, metrics.SolveAll, metrics.Partial), Is.EqualTo((1, 1, 2)));
            Assert.That(metrics.ClipFraction, Is.Zero, "on-policy: rho = 1, never clipped");
        });
    }

    [Test]
    public void SeveralMiniBatchesTakeSeveralOptimizerSteps()
    {
        var (model, trainer) = Create(new MagicOptions { LearningRate = 1e-2, MiniBatches = 2 });
        using var _ = model;
        using var __ = trainer;
        var metrics = trainer.Step(Batch());
        Assert.That(metrics.OptimizerSteps, Is.EqualTo(2));
        Assert.That(trainer.OptimizerSteps, Is.EqualTo(2));
        Assert.That(metrics.ClipFraction, Is.GreaterThanOrEqualTo(0));
    }

    [Test]
    public void BadRolloutsAreRejectedWithTheirGroup()
    {
        var (model, trainer) = Create(new MagicOptions());
        using var _ = model;
        using var __ = trainer;
        Assert.That(() => trainer.Step([S("g7", [1], [999], 1), S("g7", [1], [2], 0)]),
            Throws.ArgumentException.With.Message.Contains("g7").And.Message.Contains("999"));
        Assert.That(() => trainer.Step([new RolloutSample("g8", [1], [2, 3], 1, false, [0.5f]), S("g8", [1], [2], 0)]),
            Throws.ArgumentException.With.Message.Contains("g8").And.Message.Contains("old log-probs"));
    }
}
