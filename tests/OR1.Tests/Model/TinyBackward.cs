using OR1.Model;
using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

/// <summary>One micro-batch's forward, log-probs and backward through a tiny model, for the tests of what the backward reports.</summary>
public static class TinyBackward
{
    /// <summary>Two micro-batches of token sequences in the tiny vocabulary (37).</summary>
    public static int[][][] MicroBatches => [[[3, 17, 0, 36, 5, 5, 12, 1, 8], [9, 4]], [[30, 2, 11, 7, 7, 19], [1, 2, 3, 4]]];

    /// <summary>
    /// Adds the gradients of <paramref name="sequences"/> (random upstream gradients of the log-probs and entropies from
    /// <paramref name="seed"/>, temperature 0.9) to <paramref name="gradients"/>, telling <paramref name="gradientsFinalFrom"/>
    /// how far they are final; with <paramref name="recompute"/> through an arena that keeps only the layers' inputs.
    /// Returns the forward's log-probs.
    /// </summary>
    public static float[] Run(Qwen2Model model, int[][] sequences, Qwen2Weights gradients, int seed, Action<long>? gradientsFinalFrom = null,
        bool recompute = false)
    {
        var backend = model.Backend;
        using var batch = PackedBatch.Create(backend, sequences);
        int t = batch.TokenCount;
        using var act = new Qwen2Activations(backend, model.Config, t, model.Storage, recompute);
        Assert.That(act.Recompute, Is.EqualTo(recompute));
        using var targets = backend.Ints(sequences.SelectMany(s => s.Skip(1).Append(0)).ToArray(), t);
        using var logProbs = backend.Zeros(t);
        using var entropy = backend.Zeros(t);
        using var dLogProbs = backend.Floats(TestData.Uniform(t, seed), t);
        using var dEntropy = backend.Floats(TestData.Uniform(t, seed + 1), t);
        model.Forward(batch, act);
        model.LogProbs(act, targets, 0.9f, logProbs, entropy);
        model.Backward(batch, act, targets, 0.9f, dLogProbs, dEntropy, entropy, gradients, gradientsFinalFrom);
        return logProbs.ToFloats();
    }
}
