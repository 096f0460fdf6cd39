using OR1.Model;
using OR1.Native;

namespace OR1.Grpo.Training;

/// <summary>
/// The optimizer piece both trainers share: gradient buffers (parameter gradients accumulate over micro-batches),
/// AdamW moments, the step count for bias correction, and one step = global L2 norm, clip factor
/// min(1, max_norm / (norm + 1e-6)), AdamW with that factor on the gradient (torch's clip_grad_norm_ + AdamW).
/// Everything here is fp32. In mixed precision it updates the model's fp32 master and, in the same pass, refreshes
/// the bf16 working copy the forward reads (round to nearest even).
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    private readonly IBackend _backend;
    private readonly AdamWSlot[] _slots;
    private readonly Tensor[] _gradientTensors;

    /// <exception cref="ArgumentException">A bf16 model without fp32 master weights (build or load it for training).</exception>
    public AdamWOptimizer(Qwen2Model model)
    {
        if (model.Parameters.DType != DType.Float32)
            throw new ArgumentException("a bf16 model needs fp32 master weights to train; create or load it with master weights", nameof(model));
        _backend = model.Backend;
        Gradients = new Qwen2Weights(_backend, model.Config);
        FirstMoment = new Qwen2Weights(_backend, model.Config);
        SecondMoment = new Qwen2Weights(_backend, model.Config);
        var parameters = model.Parameters.Named;
        var working = model.Master is null ? null : model.Weights.Named;
        _slots = parameters.Select((p, i) => new AdamWSlot(p.Tensor, Gradients.Named[i].Tensor, FirstMoment.Named[i].Tensor, SecondMoment.Named[i].Tensor,
            WorkingCopy: working?[i].Tensor)).ToArray();
        _gradientTensors = _slots.Select(s => s.Gradient).ToArray();
    }

    /// <summary>dL/dθ, accumulated by the model's backward; <see cref="ZeroGradients"/> before each optimizer step's micro-batches.</summary>
    public Qwen2Weights Gradients { get; }

    /// <summary>AdamW's exp_avg.</summary>
    public Qwen2Weights FirstMoment { get; }

    /// <summary>AdamW's exp_avg_sq.</summary>
    public Qwen2Weights SecondMoment { get; }

    /// <summary>Optimizer steps taken (AdamW's bias-correction count; restored from checkpoints).</summary>
    public int Steps { get; set; }

    /// <summary>
    /// The factor the last step multiplied the gradient by (min(1, max_norm / norm)); the gradient buffers keep the
    /// unclipped values.
    /// </summary>
    public float LastClipScale { get; private set; } = 1f;

    public void ZeroGradients() => Gradients.Zero();

    /// <summary>
    /// Clips by the global norm and applies AdamW. Returns the norm before clipping.
    /// </summary>
    /// <exception cref="InvalidOperationException">The norm is not finite; nothing was changed (weights, moments,
    /// step count and <see cref="LastClipScale"/> are as before).</exception>
    public float Step(AdamWOptions options, double maxGradNorm)
    {
        float norm = _backend.GlobalNorm(_gradientTensors);
        if (!float.IsFinite(norm))
            throw new InvalidOperationException($"the gradient norm is {norm}; the update was not applied (lower the learning rate, check the data)");
        float scale = (float)Math.Min(1.0, maxGradNorm / (norm + 1e-6));
        _backend.AdamWStep(_slots, options, ++Steps, scale);
        LastClipScale = scale;
        return norm;
    }

    public void Dispose()
    {
        Gradients.Dispose();
        FirstMoment.Dispose();
        SecondMoment.Dispose();
    }
}
