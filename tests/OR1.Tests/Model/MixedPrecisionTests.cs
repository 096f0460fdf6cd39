using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Emu;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

/// <summary>
/// The whole model in bf16 mixed precision on the CUDA kernels (Emu), against the fp32 Cpu backend on the same
/// (bf16-representable) weights: log-probs and entropies, a training step's direction, a short training run, and a
/// checkpoint's bf16 round trip.
/// </summary>
[Category("Emu")]
public sealed class MixedPrecisionTests
{
    private EmuBackend _emu = null!;
    private CpuBackend _cpu = null!;

    [OneTimeSetUp]
    public void Create()
    {
        _emu = EmuOrIgnore.Open(() => new EmuBackend());
        _cpu = new CpuBackend(threads: 2);
    }

    [OneTimeTearDown]
    public void Destroy()
    {
        _emu?.Dispose();
        _cpu?.Dispose();
    }

    /// <summary>2 layers, vocabulary 97, <paramref name="heads"/> query heads over half as many kv heads of <paramref name="headDim"/>.</summary>
    private static Qwen2Config Config(int headDim, int heads = 2) => new()
    {
        HiddenSize = headDim * heads,
        IntermediateSize = 3 * headDim * heads,
        NumHiddenLayers = 2,
        NumAttentionHeads = heads,
        NumKeyValueHeads = Math.Max(1, heads / 2),
        RmsNormEps = 1e-6,
        RopeTheta = 10000,
        VocabSize = 97,
        MaxPositionEmbeddings = 256,
        TieWordEmbeddings = false,
    };

    /// <summary>Random weights rounded to bf16 (std 0.08 so logits spread), by name.</summary>
    private static Dictionary<string, float[]> Bf16Weights(Qwen2Config config, int seed)
    {
        using var scratch = new Qwen2Weights(new CpuBackend(threads: 1), config);
        return scratch.Named.Select((p, i) => (p.Name, Values: Bf16.Round(p.Name.EndsWith("norm.weight", StringComparison.Ordinal)
                ? TestData.Normal((int)p.Tensor.ElementCount, seed + i, 1f, 0.1f)
                : TestData.Normal((int)p.Tensor.ElementCount, seed + i, 0f, 0.08f))))
            .ToDictionary(p => p.Name, p => p.Values);
    }

    private static Qwen2Model Model(IBackend backend, Qwen2Config config, Precision precision, Dictionary<string, float[]> weights, bool master = false)
    {
        var model = new Qwen2Model(backend, config, precision, master);
        foreach (var (name, values) in weights)
        {
            model.Weights.Set(name, values);
            model.Master?.Set(name, values);
        }
        return model;
    }

    private static int[][] Sequences(int vocab) =>
    [
        Enumerable.Range(0, 37).Select(i => (i * 7 + 3) % vocab).ToArray(),
        Enumerable.Range(0, 1).Select(i => 5).ToArray(),
        Enumerable.Range(0, 64).Select(i => (i * i + 11) % vocab).ToArray(),
    ];

    private static (float[] LogProbs, float[] Entropy) LogProbs(Qwen2Model model)
    {
        var backend = model.Backend;
        var sequences = Sequences(model.Config.VocabSize);
        var builder = new ResponseBatch.Builder();
        foreach (var s in sequences) builder.BeginGroup(s.Take(1).ToArray()).AddResponse(s.Skip(1).ToArray());
        var batch = builder.Build();
        using var buffers = new MicroBatchBuffers(backend, model.Config.VocabSize);
        using var micro = buffers.Load(batch, batch.Range(0, batch.SequenceCount));
        using var act = new Qwen2Activations(backend, model.Config, batch.TokenCount, model.Storage);
        model.Forward(micro.Packed, act);
        model.LogProbs(act, micro.Targets, 1f, micro.LogProbs, micro.Entropy);
        return (micro.LogProbs.ToFloats(), micro.Entropy.ToFloats());
    }

    [TestCase(16)]
    [TestCase(64)]
    [TestCase(128)]
    public void Bf16LogProbsAndEntropiesMatchFp32OnTheSameWeights(int headDim)
    {
        var config = Config(headDim);
        var weights = Bf16Weights(config, 3);
        using var reference = Model(_cpu, config, Precision.Fp32, weights);
        using var bf16 = Model(_emu, config, Precision.Bf16, weights);
        using var fp32 = Model(_emu, config, Precision.Fp32, weights);
        var (refLp, refH) = LogProbs(reference);
        var (lp, h) = LogProbs(bf16);
        var (lp32, h32) = LogProbs(fp32);
        foreach (var (name, actual, expected, max, mean) in new[]
        {
            ("bf16 log-probs", lp, refLp, 0.1, 0.02), ("bf16 entropies", h, refH, 0.1, 0.02),
            ("fp32 log-probs on Emu", lp32, refLp, 2e-3, 2e-3), ("fp32 entropies on Emu", h32, refH, 2e-3, 2e-3),
        })
        {
            var deltas = actual.Zip(expected, (a, e) => Math.Abs((double)a - e)).ToArray();
            TestContext.Out.WriteLine($"head dim {headDim}, {name}: max |delta| {deltas.Max():G3}, mean {deltas.Average():G3}");
            Assert.That(deltas.Max(), Is.LessThanOrEqualTo(max), $"{name}: max |delta| at head dim {headDim}");
            Assert.That(deltas.Average(), Is.LessThanOrEqualTo(mean), $"{name}: mean |delta| at head dim {headDim}");
        }
        Assert.That(refLp.Distinct().Count(), Is.GreaterThan(50), "the weights spread the log-probs (the comparison is not of constants)");
    }

    private static SupervisedExample[] Examples(int vocab) =>
        Sequences(vocab).Where(s => s.Length > 2).Select(s => new SupervisedExample(s.Take(4).ToArray(), s.Skip(4).ToArray())).ToArray();

    private static float[] All(Qwen2Weights weights) => weights.Named.SelectMany(p => weights.ReadFloats(p.Tensor)).ToArray();

    private static double Cosine(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum() / Math.Sqrt(a.Sum(x => x * x) * b.Sum(y => y * y));

    /// <summary>
    /// One supervised step in bf16 (fp32 master, bf16 working copy) and in fp32 from the same weights: the master
    /// moves in the direction of the fp32 step. SGD-like comparison on AdamW's first step, whose update is
    /// -lr * g / (|g| + eps) per element: compared over the elements whose fp32 gradient is not tiny (where bf16
    /// activations cannot flip a sign), as the cosine is about the step, not about rounding noise.
    /// </summary>
    [Test]
    public void Bf16TrainingStepMovesTheMasterLikeTheFp32Step()
    {
        var config = Config(16, heads: 4);
        var weights = Bf16Weights(config, 5);
        using var bf16 = Model(_emu, config, Precision.Bf16, weights, master: true);
        using var fp32 = Model(_emu, config, Precision.Fp32, weights);
        using var bf16Trainer = new SupervisedTrainer(bf16);
        using var fp32Trainer = new SupervisedTrainer(fp32);
        var before = All(fp32.Parameters);
        bf16Trainer.Step(Examples(config.VocabSize), 1e-3);
        fp32Trainer.Step(Examples(config.VocabSize), 1e-3);
        var gradient = All(fp32Trainer.Optimizer.Gradients);
        var deltaBf16 = All(bf16.Parameters).Select((v, i) => (double)v - before[i]).ToArray();
        var deltaFp32 = All(fp32.Parameters).Select((v, i) => (double)v - before[i]).ToArray();
        double gradientCosine = Cosine(All(bf16Trainer.Optimizer.Gradients).Select(g => (double)g).ToArray(), gradient.Select(g => (double)g).ToArray());
        double scale = gradient.Max(g => Math.Abs(g));
        int[] clear = Enumerable.Range(0, gradient.Length).Where(i => Math.Abs(gradient[i]) > 1e-3 * scale).ToArray();
        double stepCosine = Cosine(clear.Select(i => deltaBf16[i]).ToArray(), clear.Select(i => deltaFp32[i]).ToArray());
        TestContext.Out.WriteLine($"gradient cosine {gradientCosine:F5}; step cosine {stepCosine:F5} over {clear.Length} of {gradient.Length} elements");
        Assert.That(gradientCosine, Is.GreaterThanOrEqualTo(0.99), "bf16 gradients point where the fp32 ones do");
        Assert.That(stepCosine, Is.GreaterThanOrEqualTo(0.99), "the bf16 master moves like the fp32 parameters");
        Assert.That(clear.Length, Is.GreaterThan(gradient.Length / 2));
        // The working copy is the master rounded to bf16, bit for bit.
        var master = All(bf16.Master!);
        var working = All(bf16.Weights);
        Assert.That(working, Is.EqualTo(master.Select(v => (float)(BFloat16)v).ToArray()));
    }

    [Test]
    public void TwentyBf16StepsLowerTheLossAsFp32Does()
    {
        var config = Config(16, heads: 4);
        var weights = Bf16Weights(config, 7);
        double[] Run(IBackend backend, Precision precision)
        {
            using var model = Model(backend, config, precision, weights, master: precision == Precision.Bf16);
            using var trainer = new SupervisedTrainer(model);
            return Enumerable.Range(0, 20).Select(_ => trainer.Step(Examples(config.VocabSize), 3e-3)).ToArray();
        }
        var bf16 = Run(_emu, Precision.Bf16);
        var fp32 = Run(_cpu, Precision.Fp32);
        TestContext.Out.WriteLine($"loss bf16 {bf16[0]:F4} -> {bf16[^1]:F4}; fp32 {fp32[0]:F4} -> {fp32[^1]:F4}");
        Assert.That(bf16[^1], Is.LessThan(0.5 * bf16[0]), "bf16 training lowers the loss");
        Assert.That(fp32[^1], Is.LessThan(0.5 * fp32[0]));
        Assert.That(Math.Abs(bf16[^1] - fp32[^1]), Is.LessThan(0.15 * fp32[0]), "and about as far as fp32 does");
    }

    [Test]
    public void Bf16CheckpointRoundTripsBitExact()
    {
        var config = Config(16) with { TorchDType = "bfloat16" };
        var weights = Bf16Weights(config, 9);
        string first = Path.Combine(Path.GetTempPath(), "or1-bf16-a-" + Guid.NewGuid().ToString("N"));
        string second = Path.Combine(Path.GetTempPath(), "or1-bf16-b-" + Guid.NewGuid().ToString("N"));
        try
        {
            using (var model = Model(_cpu, config, Precision.Fp32, weights)) Qwen2ModelFiles.Save(model, first, SafetensorsDType.BF16);
            using (var loaded = Qwen2ModelFiles.Load(_emu, first, Precision.Bf16, master: true))
            {
                Assert.That(loaded.Config.TorchDType, Is.EqualTo("bfloat16"));
                Qwen2ModelFiles.Save(loaded, second, Qwen2ModelFiles.CheckpointDType(loaded.Config));
                foreach (var (name, values) in weights)
                    Assert.That(loaded.Weights.ReadFloats(loaded.Weights[name]), Is.EqualTo(values), name);
            }
            Assert.That(File.ReadAllBytes(Path.Combine(second, "model.safetensors")), Is.EqualTo(File.ReadAllBytes(Path.Combine(first, "model.safetensors"))),
                "bf16 in, bf16 out: the same bytes");
        }
        finally
        {
            foreach (var dir in new[] { first, second }) if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void TheCpuBackendRefusesBf16ClearlyAndATrainerNeedsAMaster()
    {
        Assert.That(() => new Qwen2Model(_cpu, Config(16), Precision.Bf16),
            Throws.ArgumentException.With.Message.Contains("the Cpu backend computes in fp32; use --precision fp32"));
        using var inference = new Qwen2Model(_emu, Config(16), Precision.Bf16);
        Assert.That(() => new AdamWOptimizer(inference), Throws.ArgumentException.With.Message.Contains("fp32 master weights"));
    }
}
