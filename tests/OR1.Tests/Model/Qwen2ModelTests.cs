using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class Qwen2ModelTests(BackendCase backendCase)
{
    private IBackend _backend = null!;

    [OneTimeSetUp]
    public void Create() => _backend = backendCase.CreateOrIgnore();

    [OneTimeTearDown]
    public void Destroy() => _backend?.Dispose();

    private static int[][] Sequences => [[3, 17, 0, 36, 5, 5, 12], [9], [30, 2, 11, 7]];

    /// <summary>Targets: the next token within each sequence; the last position of a sequence gets token 0 and weight 0.</summary>
    private static (int[] Targets, float[] Mask) NextTokenTargets(int[][] sequences)
    {
        var targets = new List<int>();
        var mask = new List<float>();
        foreach (var s in sequences)
            for (int i = 0; i < s.Length; i++)
            {
                targets.Add(i + 1 < s.Length ? s[i + 1] : 0);
                mask.Add(i + 1 < s.Length ? 1f : 0f);
            }
        return (targets.ToArray(), mask.ToArray());
    }

    [TestCase(false)]
    [TestCase(true)]
    public void LogitsMatchAnIndependentHfFormulaForward(bool tied)
    {
        var config = TinyModels.Config(tied);
        using var model = new Qwen2Model(_backend, config);
        var weights = TinyModels.Randomize(model.Weights, 100);
        var sequences = Sequences;
        using var batch = PackedBatch.Create(_backend, sequences);
        using var act = new Qwen2Activations(_backend, config, batch.TokenCount);
        var hidden = model.Forward(batch, act);
        using var logits = _backend.Allocate(DType.Float32, new TensorShape(batch.TokenCount, config.VocabSize));
        model.Logits(hidden, logits);
        var actual = logits.ToFloats();
        int row = 0;
        foreach (var s in sequences)
        {
            var expected = Qwen2ReferenceForward.Logits(config, weights, s);
            var expectedFlat = new double[s.Length * config.VocabSize];
            Buffer.BlockCopy(expected, 0, expectedFlat, 0, expectedFlat.Length * sizeof(double));
            TensorAssert.Close(actual.AsSpan(row * config.VocabSize, s.Length * config.VocabSize), expectedFlat, 1e-4, 1e-4,
                $"logits of a {s.Length}-token sequence (tied={tied})", [s.Length, config.VocabSize]);
            row += s.Length;
        }
    }

    /// <summary>
    /// Every parameter's gradient against central finite differences of the fp32 forward, one random
    /// direction per parameter tensor. The objective is a random combination of log-probs and entropies
    /// (the trainer's two loss inputs). Tolerance: fp32 forward noise on an O(1) objective is ~1e-6; with
    /// h = 1e-2 that becomes ~1e-4 relative to the directional derivative, and the O(h^2) truncation of a
    /// smooth function is of the same order, so 1e-2 relative leaves a wide margin while a wrong term
    /// (sign, factor, missing path) shows up as O(1).
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void GradientsMatchFiniteDifferences(bool tied)
    {
        var config = TinyModels.Config(tied);
        using var model = new Qwen2Model(_backend, config);
        var weights = TinyModels.Randomize(model.Weights, 200);
        using var gradients = new Qwen2Weights(_backend, config);
        var sequences = Sequences;
        using var batch = PackedBatch.Create(_backend, sequences);
        int t = batch.TokenCount;
        using var act = new Qwen2Activations(_backend, config, t);
        var (targets, mask) = NextTokenTargets(sequences);
        var a = TestData.Uniform(t, 1).Select((v, i) => v * mask[i]).ToArray();
        var c = TestData.Uniform(t, 2);
        using var targetTensor = _backend.Ints(targets, t);
        using var logProbs = _backend.Zeros(t);
        using var entropy = _backend.Zeros(t);
        const float temperature = 0.9f;

        double Objective()
        {
            model.Forward(batch, act);
            model.LogProbs(act, targetTensor, temperature, logProbs, entropy);
            return FloatGradientCheck.Project(logProbs.ToFloats(), a) + FloatGradientCheck.Project(entropy.ToFloats(), c);
        }

        Objective();
        gradients.Zero();
        using var dLogProbs = _backend.Floats(a, t);
        using var dEntropy = _backend.Floats(c, t);
        model.Backward(batch, act, targetTensor, temperature, dLogProbs, dEntropy, entropy, gradients);

        int index = 0;
        foreach (var (name, tensor) in model.Weights.Named)
        {
            var x = weights[name];
            // A fixed seed per tensor: string.GetHashCode is randomised per process, which made the directions (and so the test) differ run to run.
            int seed = 1000 + 17 * index++;
            FloatGradientCheck.Directional(values =>
            {
                _backend.Upload<float>(values, tensor);
                double f = Objective();
                _backend.Upload<float>(x, tensor);
                return f;
            }, x, gradients[name].ToFloats(), $"d objective / d {name} (tied={tied})", h: 1e-2, relTol: 1e-2, directions: 1, seed: seed);
        }
    }

    [Test]
    public void PackedSequencesDoNotSeeEachOther()
    {
        var config = TinyModels.Config(tied: false);
        using var model = new Qwen2Model(_backend, config);
        TinyModels.Randomize(model.Weights, 300);
        var sequences = Sequences;
        var (targets, _) = NextTokenTargets(sequences);
        float[] Run(int[][] seqs, int[] tgts)
        {
            using var batch = PackedBatch.Create(_backend, seqs);
            using var act = new Qwen2Activations(_backend, config, batch.TokenCount);
            using var tt = _backend.Ints(tgts, tgts.Length);
            using var lp = _backend.Zeros(tgts.Length);
            using var ent = _backend.Zeros(tgts.Length);
            model.Forward(batch, act);
            model.LogProbs(act, tt, 1f, lp, ent);
            return lp.ToFloats();
        }
        var packed = Run(sequences, targets);
        var alone = Run([sequences[2]], targets[^sequences[2].Length..]);
        TensorAssert.Close(packed.AsSpan(packed.Length - alone.Length), alone, 1e-6, 1e-5, "last sequence packed vs alone");
    }

    [Test]
    public void KvCacheDecodingGivesTheLogProbsOfAFullForward()
    {
        var config = TinyModels.Config(tied: false);
        using var model = new Qwen2Model(_backend, config);
        TinyModels.Randomize(model.Weights, 400);
        using var generator = new Qwen2Generator(model, maxBatch: 8, maxLength: 32);
        IReadOnlyList<int>[] prompts = [[1, 2, 3, 4, 5], [7, 8]];
        // A quarter of the vocabulary stops a sample, so samples finish at different steps and the batch compacts.
        var options = new GenerationOptions(12, new SamplingOptions(1f), StopTokenIds: [.. Enumerable.Range(0, 9)], SamplesPerPrompt: 3, Seed: 5);
        var samples = generator.Generate(prompts, options);
        Assert.That(samples, Has.Count.EqualTo(6));
        Assert.That(samples.Select(s => s.Tokens.Count).Distinct().Count(), Is.GreaterThan(1), "samples should end at different lengths");

        foreach (var sample in samples)
        {
            var full = prompts[sample.PromptIndex].Concat(sample.Tokens).ToArray();
            var targets = full.Skip(1).Append(0).ToArray();
            using var batch = PackedBatch.Create(_backend, [full]);
            using var act = new Qwen2Activations(_backend, config, full.Length);
            using var tt = _backend.Ints(targets, full.Length);
            using var lp = _backend.Zeros(full.Length);
            using var ent = _backend.Zeros(full.Length);
            model.Forward(batch, act);
            model.LogProbs(act, tt, 1f, lp, ent);
            int promptLength = prompts[sample.PromptIndex].Count;
            var expected = lp.ToFloats().AsSpan(promptLength - 1, sample.Tokens.Count).ToArray();
            TensorAssert.Close(sample.LogProbs.ToArray(), expected, 2e-5, 1e-4, $"decode log-probs of prompt {sample.PromptIndex} sample {sample.SampleIndex}");
            bool stopped = sample.Tokens.Count > 0 && options.StopTokenIds.Contains(sample.Tokens[^1]);
            Assert.That(sample.Truncated, Is.EqualTo(!stopped), "truncated exactly when no stop token ended the sample");
            if (sample.Truncated) Assert.That(sample.Tokens, Has.Count.EqualTo(12));
        }
    }

    [Test]
    public void GenerationIsReproducibleForASeed()
    {
        var config = TinyModels.Config(tied: true);
        using var model = new Qwen2Model(_backend, config);
        TinyModels.Randomize(model.Weights, 500);
        using var generator = new Qwen2Generator(model, maxBatch: 4, maxLength: 24);
        IReadOnlyList<int>[] prompts = [[1, 2, 3], [5], [6, 6]];
        var options = new GenerationOptions(10, new SamplingOptions(1f, 0.9f, 20), [], SamplesPerPrompt: 2, Seed: 9);
        var first = generator.Generate(prompts, options);
        var second = generator.Generate(prompts, options);
        var other = generator.Generate(prompts, options with { Seed = 10 });
        Assert.That(second.Select(s => s.Tokens), Is.EqualTo(first.Select(s => s.Tokens)));
        Assert.That(other.Select(s => s.Tokens), Is.Not.EqualTo(first.Select(s => s.Tokens)));
        Assert.That(first.All(s => s.Truncated && s.Tokens.Count == 10), "no stop tokens: every sample runs to the limit");
    }

    [Test]
    public void TooLongPromptIsRejected()
    {
        var config = TinyModels.Config(tied: true);
        using var model = new Qwen2Model(_backend, config);
        using var generator = new Qwen2Generator(model, maxBatch: 2, maxLength: 8);
        Assert.That(() => generator.Generate([[1, 2, 3, 4, 5, 6]], new GenerationOptions(5, new SamplingOptions(), [])),
            Throws.ArgumentException.With.Message.Contains("prompt 0").And.Message.Contains("maximum length 8"));
    }
}
