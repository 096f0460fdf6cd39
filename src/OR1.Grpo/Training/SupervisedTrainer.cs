using OR1.Model;
using OR1.Native;

namespace OR1.Grpo.Training;

/// <summary>One supervised example: a prompt and the response the model should learn to produce.</summary>
public sealed record SupervisedExample(IReadOnlyList<int> PromptTokens, IReadOnlyList<int> ResponseTokens);

/// <summary>
/// Supervised warm-up (SFT): token-level cross-entropy on response tokens only, through the same
/// chunked log-prob op as RL (loss = -mean log p(target)), then global-norm clipping and AdamW (the optimizer
/// piece the MAGIC trainer uses). The learning rate is given per step so callers can schedule it (the sample uses
/// cosine decay).
/// </summary>
public sealed class SupervisedTrainer : IDisposable
{
    private readonly Qwen2Model _model;
    private readonly IBackend _backend;
    private readonly MicroBatchBuffers _buffers;
    private float[] _host = [];
    private Qwen2Activations? _activations;

    public SupervisedTrainer(Qwen2Model model, double weightDecay = 0.01, double maxGradNorm = 1.0)
    {
        _model = model;
        _backend = model.Backend;
        WeightDecay = weightDecay;
        MaxGradNorm = maxGradNorm;
        Optimizer = new AdamWOptimizer(model);
        _buffers = new MicroBatchBuffers(_backend, model.Config.VocabSize);
    }

    public double WeightDecay { get; }
    public double MaxGradNorm { get; }

    /// <summary>Gradients, AdamW moments and the step count.</summary>
    public AdamWOptimizer Optimizer { get; }

    public int Steps => Optimizer.Steps;

    /// <summary>
    /// One optimizer step on <paramref name="examples"/> (packed as one micro-batch); returns the mean cross-entropy.
    /// The host waits for the device twice: for the gradient norm (clipping) and for the log-probs (the loss); the
    /// buffers are reused, so a step no larger than an earlier one allocates nothing on the device.
    /// </summary>
    /// <exception cref="ArgumentException">An empty prompt, no response tokens, or a token id outside the vocabulary
    /// (its packed position and value), before anything is uploaded.</exception>
    public double Step(IReadOnlyList<SupervisedExample> examples, double learningRate)
    {
        ArgumentNullException.ThrowIfNull(examples);
        var builder = new ResponseBatch.Builder();
        for (int i = 0; i < examples.Count; i++)
        {
            if (examples[i].PromptTokens.Count == 0) throw new ArgumentException($"example {i} has an empty prompt", nameof(examples));
            builder.BeginGroup(examples[i].PromptTokens.ToArray()).AddResponse(examples[i].ResponseTokens.ToArray());
        }
        var batch = builder.Build();
        int responseTokens = batch.ResponseTokenCount;
        if (responseTokens == 0) throw new ArgumentException("the batch has no response tokens to learn", nameof(examples));

        var range = batch.Range(0, batch.SequenceCount);
        int n = range.TokenCount;
        using var micro = _buffers.Load(batch, range);
        if (_host.Length < n) _host = new float[n];
        Array.Clear(_host, 0, n);
        for (int s = 0; s < batch.SequenceCount; s++)
            _host.AsSpan(batch.ResponseStart(s), batch.ResponseLength(s)).Fill(-1f / responseTokens);
        _backend.Upload<float>(_host.AsSpan(0, n), micro.DLogProbs);

        if (_activations is null || _activations.Capacity < n)
        {
            _activations?.Dispose();
            _activations = new Qwen2Activations(_backend, _model.Config, n, _model.Storage);
        }
        _model.Forward(micro.Packed, _activations);
        _model.LogProbs(_activations, micro.Targets, 1f, micro.LogProbs, micro.Entropy);
        Optimizer.ZeroGradients();
        _model.Backward(micro.Packed, _activations, micro.Targets, 1f, micro.DLogProbs, null, micro.Entropy, Optimizer.Gradients, Optimizer.GradientsFinalFrom);
        Optimizer.Step(new AdamWOptions(learningRate, WeightDecay: WeightDecay), MaxGradNorm);

        _backend.Download<float>(micro.LogProbs, _host.AsSpan(0, n));
        double loss = 0;
        for (int s = 0; s < batch.SequenceCount; s++)
            foreach (float logProb in _host.AsSpan(batch.ResponseStart(s), batch.ResponseLength(s))) loss -= logProb;
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
        _buffers.Dispose();
        Optimizer.Dispose();
    }
}
