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
            TensorAssert.Close(trainer.Optimizer.Gradients[name].ToFloats(), TestData.ToDouble(tensor.ToFloats()), 1e-7, 1e-4, $"gradient of {name}");
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
            return trainer.Optimizer.Gradients.Named.SelectMany(p => p.Tensor.ToFloats()).ToArray();
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
            Assert.That(trainer.Optimizer.Steps, Is.Zero);
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
            Assert.That(trainer.Optimizer.Steps, Is.EqualTo(1));
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
        Assert.That(trainer.Optimizer.Steps, Is.EqualTo(2));
        Assert.That(metrics.MiniBatches.Select(m => m.Tokens), Is.EqualTo(new[] { 3 + 1 + 2, 4 + 2 }), "group a, then group b");
        Assert.That(metrics.OldLogProbSeconds, Is.GreaterThan(0), "log p_old is computed by a forward before the first update");
    }

    /// <summary>
    /// Activation recomputation changes no bit of a training step: two mini-batches of several micro-batches each (old
    /// log-probs by a forward, then two updates), the same updated weights and the same loss with and without it.
    /// </summary>
    [Test]
    public void RecomputationChangesNoBitOfTheUpdate()
    {
        Dictionary<string, float[]> Run(bool recompute, out double loss)
        {
            var (model, trainer) = Create(new MagicOptions { LearningRate = 1e-2, MiniBatches = 2, MicroBatchTokens = 6, Recompute = recompute });
            using var _ = model;
            using var __ = trainer;
            var metrics = trainer.Step(Batch());
            loss = metrics.MiniBatches.Sum(m => m.PolicyLoss);
            return model.Weights.Named.ToDictionary(n => n.Name, n => n.Tensor.ToFloats());
        }
        var saved = Run(recompute: false, out double savedLoss);
        var recomputed = Run(recompute: true, out double recomputedLoss);
        Assert.That(BitConverter.DoubleToInt64Bits(recomputedLoss), Is.EqualTo(BitConverter.DoubleToInt64Bits(savedLoss)), "the loss");
        foreach (var (name, expected) in saved)
            Assert.That(recomputed[name].Select(BitConverter.SingleToInt32Bits), Is.EqualTo(expected.Select(BitConverter.SingleToInt32Bits)), $"{name} after the step");
    }

    /// <summary>log p of every response token of <paramref name="samples"/> under <paramref name="model"/>, per sample (float, our kernels).</summary>
    private float[][] ResponseLogProbs(Qwen2Model model, RolloutSample[] samples)
    {
        var result = new float[samples.Length][];
        for (int i = 0; i < samples.Length; i++)
        {
            int[] sequence = samples[i].PromptTokens.Concat(samples[i].ResponseTokens).ToArray();
            using var batch = PackedBatch.Create(_backend, [sequence]);
            using var act = new Qwen2Activations(_backend, model.Config, sequence.Length);
            using var targets = _backend.Ints(sequence.Skip(1).Append(0).ToArray(), sequence.Length);
            using var logProbs = _backend.Zeros(sequence.Length);
            using var entropy = _backend.Zeros(sequence.Length);
            model.Forward(batch, act);
            model.LogProbs(act, targets, 1f, logProbs, entropy);
            result[i] = logProbs.ToFloats().Skip(samples[i].PromptTokens.Count - 1).Take(samples[i].ResponseTokens.Count).ToArray();
        }
        return result;
    }

    /// <summary>
    /// With the sampler's log-probs as log p_old, set so that rho = exp(delta) with known deltas, the clip fractions on
    /// each side and ppo_kl are known exactly. eps = 0.2: clipped low when A &lt; 0 and rho &lt; 0.8 (delta &lt; -0.223),
    /// clipped high when A &gt; 0 and rho &gt; 1.2 (delta &gt; 0.182); the other side of each bound is not clipped.
    /// </summary>
    [Test]
    public void KnownClipFractionsOnEachSideAndPpoKl()
    {
        var (model, trainer) = Create(new MagicOptions { LearningRate = 0, OldLogProbs = OldLogProbSource.Sampler, MicroBatchTokens = 1000 });
        using var _ = model;
        using var __ = trainer;
        var batch = Batch();
        var logProbs = ResponseLogProbs(model, batch);
        // Advantages: group a (1, 0, 0) -> +, -, -; group b (0, 1) -> -, +; groups c and d are dropped.
        double[][] deltas =
        [
            [0.5, 0, 0.1],       // A > 0: one high clip (rho 1.65), 1.0 and 1.105 inside
            [-0.5],              // A < 0: rho 0.61, low clip
            [0.5, -0.1],         // A < 0: rho 1.65 is the unclipped side for A < 0; 0.905 inside
            [-1, -0.3, 0, 0.3],  // A < 0: 0.37 and 0.74 low clips; 1.0 inside; 1.35 unclipped side
            [1, -1],             // A > 0: 2.72 high clip; 0.37 is the unclipped side for A > 0
            [0, 0], [0], [0], [0, 0],
        ];
        var withOld = batch.Select((sample, i) => sample with
        {
            OldLogProbs = logProbs[i].Select((lp, j) => (float)(lp - deltas[i][j])).ToArray(),
        }).ToArray();
        var metrics = trainer.Step(withOld);
        const int kept = 12;
        Assert.Multiple(() =>
        {
            Assert.That(metrics.ClipFractionLow, Is.EqualTo(3.0 / kept).Within(1e-6));
            Assert.That(metrics.ClipFractionHigh, Is.EqualTo(2.0 / kept).Within(1e-6));
            Assert.That(metrics.ClipFraction, Is.EqualTo(5.0 / kept).Within(1e-6));
            // ppo_kl = mean(old - new) = -mean(delta) over the kept tokens; the deltas of a and b sum to -0.5.
            Assert.That(metrics.PpoKl, Is.EqualTo(0.5 / kept).Within(1e-5));
            Assert.That(metrics.OldLogprobs, Is.EqualTo("sampler"));
            Assert.That(metrics.SamplerLogProbDiffTokens, Is.EqualTo(kept));
            Assert.That(metrics.SamplerLogProbDiffMax, Is.EqualTo(1.0).Within(1e-5), "|delta| at most 1");
        });
    }

    /// <summary>
    /// recompute with one mini-batch: log p_old is the training forward itself, so rho = 1 to the bit, whatever the
    /// rollout engine reported; its values only feed the disagreement metric.
    /// </summary>
    [Test]
    public void RecomputeWithOneMiniBatch_RatioIsExactlyOne()
    {
        var (model, trainer) = Create(new MagicOptions { LearningRate = 1e-2, FixedEntropyCoefficient = 0 });
        using var _ = model;
        using var __ = trainer;
        var batch = Batch();
        var logProbs = ResponseLogProbs(model, batch);
        // A sampler that disagrees by exactly 0.25 nats on every token (as mismatched decode kernels would).
        var withSampler = batch.Select((sample, i) => sample with { OldLogProbs = logProbs[i].Select(lp => lp - 0.25f).ToArray() }).ToArray();
        var metrics = trainer.Step(withSampler);
        Assert.Multiple(() =>
        {
            Assert.That(metrics.PpoKl, Is.EqualTo(0.0), "old - new is exactly 0 on every token");
            Assert.That(metrics.ClipFraction, Is.EqualTo(0.0));
            Assert.That(metrics.OldLogprobs, Is.EqualTo("recompute"));
            Assert.That(metrics.OldLogProbSeconds, Is.Zero, "no extra forward");
            Assert.That(metrics.SamplerLogProbDiffMean, Is.EqualTo(0.25).Within(1e-5));
            Assert.That(metrics.SamplerLogProbDiffMax, Is.EqualTo(0.25).Within(1e-5));
            Assert.That(metrics.SamplerLogProbDiffTokens, Is.EqualTo(12));
        });
        // rho = 1: the policy loss is -sum_t w_t A_t exactly (token mean over the 12 kept tokens).
        double sa = Math.Sqrt(1.0 / 3) + 1e-6, sb = Math.Sqrt(0.5) + 1e-6;
        double[] adv = [(1 - 1.0 / 3) / sa, (0 - 1.0 / 3) / sa, (0 - 1.0 / 3) / sa, -0.5 / sb, 0.5 / sb];
        int[] tokens = [3, 1, 2, 4, 2];
        double expected = -adv.Select((a, i) => a * tokens[i]).Sum() / 12;
        Assert.That(metrics.PolicyLoss, Is.EqualTo(expected).Within(1e-6));
    }

    /// <summary>
    /// Two mini-batches (group a, then group b), recompute: the second mini-batch's ratio uses log p_old from before
    /// the first update and log p from after it. Checked against a double-precision reference: the weights after the
    /// first update come from a one-mini-batch step on group a alone (the same update), log-probs from the
    /// independent HF-formula forward. Using the current log-probs as old (rho = 1) would give a different loss.
    /// </summary>
    [Test]
    public void TwoMiniBatches_SecondUsesOldLogProbsFromBeforeTheFirstUpdate()
    {
        var options = new MagicOptions { LearningRate = 0.05, FixedEntropyCoefficient = 0, MiniBatches = 2, MicroBatchTokens = 1000 };
        var (model, trainer) = Create(options);
        using var _ = model;
        using var __ = trainer;
        var config = model.Config;
        var initial = model.Weights.Named.ToDictionary(p => p.Name, p => p.Tensor.ToFloats());
        var metrics = trainer.Step(Batch());
        Assert.That(metrics.MiniBatches, Has.Count.EqualTo(2));

        var (afterA, firstOnly) = Create(options with { MiniBatches = 1 });
        using var ___ = afterA;
        using var ____ = firstOnly;
        firstOnly.Step(Batch().Where(s => s.GroupId == "a").ToArray());
        var updated = afterA.Weights.Named.ToDictionary(p => p.Name, p => p.Tensor.ToFloats());

        var groupB = Batch().Where(s => s.GroupId == "b").ToArray();
        double std = Math.Sqrt(0.5) + 1e-6;
        double[] advantages = groupB.Select(s => (s.Reward - 0.5) / std).ToArray();
        int tokens = groupB.Sum(s => s.ResponseTokens.Count);
        double pg = 0, low = 0, high = 0, ppoKl = 0, maxDeviation = 0, pgIfRhoWereOne = 0;
        for (int i = 0; i < groupB.Length; i++)
        {
            var before = ReferenceResponseLogProbs(config, initial, groupB[i]);
            var after = ReferenceResponseLogProbs(config, updated, groupB[i]);
            for (int j = 0; j < before.Length; j++)
            {
                double rho = Math.Exp(after[j] - before[j]), a = advantages[i];
                double clippedRho = Math.Clamp(rho, 0.8, 1.2);
                bool clipped = clippedRho * a < rho * a;
                pg -= Math.Min(rho * a, clippedRho * a) / tokens;
                if (clipped && rho < 0.8) low += 1.0 / tokens;
                if (clipped && rho > 1.2) high += 1.0 / tokens;
                ppoKl += (before[j] - after[j]) / tokens;
                maxDeviation = Math.Max(maxDeviation, Math.Abs(rho - 1));
                pgIfRhoWereOne -= a / tokens;
            }
        }
        var second = metrics.MiniBatches[1];
        Assert.That(maxDeviation, Is.GreaterThan(0.01), "the first update moved group b's log-probs (the test would not see a wiring mistake otherwise)");
        Assert.That(Math.Abs(pg - pgIfRhoWereOne), Is.GreaterThan(1e-3), "the reference distinguishes the right old log-probs from the current ones");
        Assert.Multiple(() =>
        {
            Assert.That(second.Tokens, Is.EqualTo(tokens));
            Assert.That(second.PolicyLoss, Is.EqualTo(pg).Within(1e-4));
            Assert.That(second.PpoKl, Is.EqualTo(ppoKl).Within(1e-4));
            Assert.That(second.ClipFractionLow, Is.EqualTo(low).Within(1e-6));
            Assert.That(second.ClipFractionHigh, Is.EqualTo(high).Within(1e-6));
        });
    }

    /// <summary>log p of each response token by the double-precision HF-formula forward.</summary>
    private static double[] ReferenceResponseLogProbs(Qwen2Config config, IReadOnlyDictionary<string, float[]> weights, RolloutSample sample)
    {
        int[] sequence = sample.PromptTokens.Concat(sample.ResponseTokens).ToArray();
        double[,] logits = Qwen2ReferenceForward.Logits(config, weights, sequence);
        int prompt = sample.PromptTokens.Count, vocab = logits.GetLength(1);
        var result = new double[sample.ResponseTokens.Count];
        for (int j = 0; j < result.Length; j++)
        {
            int row = prompt - 1 + j;
            double max = double.NegativeInfinity;
            for (int v = 0; v < vocab; v++) max = Math.Max(max, logits[row, v]);
            double sum = 0;
            for (int v = 0; v < vocab; v++) sum += Math.Exp(logits[row, v] - max);
            result[j] = logits[row, sample.ResponseTokens[j]] - max - Math.Log(sum);
        }
        return result;
    }

    [Test]
    public void SamplerSource_NeedsTheRolloutEnginesLogProbs()
    {
        var (model, trainer) = Create(new MagicOptions { OldLogProbs = OldLogProbSource.Sampler });
        using var _ = model;
        using var __ = trainer;
        Assert.That(() => trainer.Step(Batch()), Throws.ArgumentException.With.Message.Contains("old_logprobs = sampler").And.Message.Contains("'a'"));
    }

    [Test]
    public void GroupsWithDifferentPromptsAreRejected()
    {
        var (model, trainer) = Create(new MagicOptions());
        using var _ = model;
        using var __ = trainer;
        Assert.That(() => trainer.Step([S("g", [1, 2], [3], 1), S("g", [1, 9], [3], 0)]),
            Throws.ArgumentException.With.Message.Contains("'g'").And.Message.Contains("different prompts"));
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
