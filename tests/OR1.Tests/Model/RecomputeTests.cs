using OR1.Model;
using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

/// <summary>
/// Activation recomputation (<see cref="Qwen2Activations.Recompute"/>): the backward that recomputes each layer from its
/// input gives the gradients of the backward over saved activations bit for bit, on every backend (the same kernels on
/// the same inputs), in fp32 and, where the backend stores it, bf16; and the arena is smaller by the layers it no longer
/// keeps.
/// </summary>
[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class RecomputeTests(BackendCase backendCase)
{
    private IBackend _backend = null!;

    [OneTimeSetUp]
    public void Create() => _backend = backendCase.CreateOrIgnore();

    [OneTimeTearDown]
    public void Destroy() => _backend?.Dispose();

    /// <summary>Every gradient tensor's bits after one forward, log-prob and backward, with or without recomputation.</summary>
    private Dictionary<string, float[]> Gradients(Qwen2Model model, bool recompute, int seed)
    {
        using var gradients = new Qwen2Weights(_backend, model.Config);
        gradients.Zero();
        float[] logProbs = TinyBackward.Run(model, [.. TinyBackward.MicroBatches[0], TinyBackward.MicroBatches[1][0]], gradients, seed, recompute: recompute);
        var result = gradients.Named.ToDictionary(n => n.Name, n => n.Tensor.ToFloats());
        result["log_probs"] = logProbs;
        return result;
    }

    [TestCase(Precision.Fp32, false)]
    [TestCase(Precision.Fp32, true)]
    [TestCase(Precision.Bf16, false)]
    public void RecomputedGradientsAreTheSavedActivationsGradientsBitForBit(Precision precision, bool tied)
    {
        if (!_backend.StorageTypes.Contains(precision.StorageType())) Assert.Ignore($"the {_backend.Kind} backend does not store {precision}");
        using var model = new Qwen2Model(_backend, TinyModels.Config(tied), precision, master: precision == Precision.Bf16);
        model.InitializeRandom(41);
        var saved = Gradients(model, recompute: false, seed: 5);
        var recomputed = Gradients(model, recompute: true, seed: 5);
        Assert.That(recomputed.Keys, Is.EquivalentTo(saved.Keys));
        int nonZero = 0;
        foreach (var (name, expected) in saved)
        {
            var actual = recomputed[name];
            int differing = 0;
            for (int i = 0; i < expected.Length; i++)
                if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(expected[i])) differing++;
            Assert.That(differing, Is.Zero, $"{name}: {differing} of {expected.Length} elements differ with recomputation ({precision}, tied {tied})");
            if (expected.Any(v => v != 0f)) nonZero++;
        }
        Assert.That(nonZero, Is.GreaterThan(saved.Count / 2), "the gradients are not all zero (the comparison can fail)");
    }

    [Test]
    public void TheRecomputingArenaKeepsOneLayersActivations()
    {
        var config = TinyModels.Config(tied: false);
        long Bytes(bool recompute)
        {
            long before = _backend.AllocatedBytes;
            using var act = new Qwen2Activations(_backend, config, 64, DType.Float32, recompute);
            return _backend.AllocatedBytes - before;
        }
        long full = Bytes(false), recomputing = Bytes(true);
        TestContext.Out.WriteLine($"{config.NumHiddenLayers} layers, 64 tokens: {full:N0} bytes saved, {recomputing:N0} recomputing");
        Assert.That(recomputing, Is.LessThan(full));
        // The difference is the activations of all layers but one.
        long perLayer = 64L * 4 * (3 * config.HiddenSize + 2 + 2 * config.NumAttentionHeads * config.HeadDim + 2 * config.NumKeyValueHeads * config.HeadDim
                                   + config.NumAttentionHeads + 3 * config.IntermediateSize);
        Assert.That(full - recomputing, Is.EqualTo((config.NumHiddenLayers - 1) * perLayer));
    }
}
