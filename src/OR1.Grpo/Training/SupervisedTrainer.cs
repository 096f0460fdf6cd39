using OR1.Model;
using OR1.Native;

namespace OR1.Grpo.Training;

/// <summary>One supervised example: a prompt and the response the model should learn to produce.</summary>
public sealed record SupervisedExample(IReadOnlyList<int> PromptTokens, IReadOnlyList<int> ResponseTokens);

/// <summary>
/// Supervised warm-up (SFT): token-level cross-entropy on response tokens only, through the same
/// chunked log-prob op as RL (loss = -mean log p(target)), then global-norm clipping and AdamW. The
/// learning rate is given per step so callers can schedule it (the sample uses cosine decay).
/// </summary>
public sealed class SupervisedTrainer : IDisposable
{
    private readonly Qwen2Model _model;
    private readonly IBackend _backend;
    private readonly Qwen2Weights _gradients, _m, _v;
    private readonly AdamWSlot[] _slots;
    private Qwen2Activations? _activations;

    public SupervisedTrainer(Qwen2Model model, double weightDecay = 0.01, double maxGradNorm = 1.0)
    {
        _model = model;
        _backend = model.Backend;
        WeightDecay = weightDecay;
        MaxGradNorm = maxGradNorm;
        _gradients = new Qwen2Weights(_backend, model.Config);
        _m = new Qwen2Weights(_backend, model.Config);
        _v = new Qwen2Weights(_backend, model.Config);
        _slots = model.Weights.Named.Select((p, i) => new AdamWSlot(p.Tensor, _gradients.Named[i].Tensor, _m.Named[i].Tensor, _v.Named[i].Tensor)).ToArray();
    }

    public double WeightDecay { get; }
    public double MaxGradNorm { get; }
    public int Steps { get; private set; }

    /// <summary>One optimizer step on <paramref name="batch"/> (packed as one micro-batch); returns the mean cross-entropy.</summary>
    public double Step(IReadOnlyList<SupervisedExample> batch, double learningRate)
    {
        var sequences = batch.Select(e => (IReadOnlyList<int>)e.PromptTokens.Concat(e.ResponseTokens).ToArray()).ToArray();
        int total = sequences.Sum(s => s.Count);
        int responseTokens = batch.Sum(e => e.ResponseTokens.Count);
        if (responseTokens == 0) throw new ArgumentException("the batch has no response tokens to learn", nameof(batch));
        var targets = new int[total];
        var dLogProbs = new float[total];
        var mask = new bool[total];
        for (int s = 0, at = 0; s < sequences.Length; s++)
        {
            int promptLength = batch[s].PromptTokens.Count;
            if (promptLength == 0) throw new ArgumentException($"example {s} has an empty prompt", nameof(batch));
            for (int p = 0; p < sequences[s].Count; p++, at++)
            {
                targets[at] = p + 1 < sequences[s].Count ? sequences[s][p + 1] : 0;
                if (p >= promptLength - 1 && p + 1 < sequences[s].Count)
                {
                    mask[at] = true;
                    dLogProbs[at] = -1f / responseTokens;
                }
            }
        }
        using var packed = PackedBatch.Create(_backend, sequences);
        if (_activations is null || _activations.Capacity < total)
        {
            _activations?.Dispose();
            _activations = new Qwen2Activations(_backend, _model.Config, total);
        }
        using var targetTensor = _backend.Allocate(DType.Int32, new TensorShape(total));
        using var logProbs = _backend.Allocate(DType.Float32, new TensorShape(total));
        using var entropy = _backend.Allocate(DType.Float32, new TensorShape(total));
        using var gradient = _backend.Allocate(DType.Float32, new TensorShape(total));
        _backend.Upload<int>(targets, targetTensor);
        _backend.Upload<float>(dLogProbs, gradient);
        _model.Forward(packed, _activations);
        _model.LogProbs(_activations, targetTensor, 1f, logProbs, entropy);
        _gradients.Zero();
        _model.Backward(packed, _activations, targetTensor, 1f, gradient, null, entropy, _gradients);
        float norm = _backend.GlobalNorm(_slots.Select(s => s.Gradient).ToArray());
        if (!float.IsFinite(norm)) throw new InvalidOperationException($"the gradient norm is {norm}; lower the learning rate");
        float scale = (float)Math.Min(1.0, MaxGradNorm / (norm + 1e-6));
        _backend.AdamWStep(_slots, new AdamWOptions(learningRate, WeightDecay: WeightDecay), ++Steps, scale);

        var host = new float[total];
        _backend.Download<float>(logProbs, host);
        double loss = 0;
        for (int i = 0; i < total; i++)
            if (mask[i]) loss -= host[i];
        return loss / responseTokens;
    }

    /// <summary>Cosine decay from <paramref name="peak"/> to <paramref name="floor"/> over <paramref name="total"/> steps, after a linear warm-up.</summary>
    public static double CosineLearningRate(int step, int total, double peak, double floor = 0, int warmup = 0)
    {
        if (step < warmup) return peak * (step + 1) / warmup;
        double progress = Math.Clamp((step - warmup) / (double)Math.Max(1, total - warmup), 0, 1);
        return floor + 0.5 * (peak - floor) * (1 + Math.Cos(Math.PI * progress));
    }

    public void Dispose()
    {
        _activations?.Dispose();
        _gradients.Dispose();
        _m.Dispose();
        _v.Dispose();
    }
}
