using OR1.Native;

namespace OR1.Model;

/// <summary>
/// Qwen2ForCausalLM with an explicit forward and backward over packed sequences, written only against
/// the op contract (llm.c style: no autograd). Per layer: RMSNorm → q/k/v projections (with bias) →
/// RoPE on q and k → causal GQA attention → o_proj → residual; RMSNorm → SwiGLU MLP → residual; then the
/// final RMSNorm and the LM head (tied to the embedding when the config says so). The LM head is only
/// ever applied through the chunked log-prob op (training) or to a few rows (generation).
/// </summary>
public sealed class Qwen2Model : IDisposable
{
    /// <summary>
    /// Creates a zero-initialised model in <paramref name="precision"/>; load weights or call <see cref="InitializeRandom"/>.
    /// In bf16 with <paramref name="master"/>, the model also holds fp32 master weights (what training updates; the
    /// bf16 <see cref="Weights"/> are their working copy); inference needs none.
    /// </summary>
    /// <exception cref="ArgumentException">The backend cannot store the precision (the Cpu backend computes in fp32).</exception>
    public Qwen2Model(IBackend backend, Qwen2Config config, Precision precision = Precision.Fp32, bool master = false)
    {
        backend.Require(precision);
        Backend = backend;
        Config = config;
        Precision = precision;
        Weights = new Qwen2Weights(backend, config, precision.StorageType());
        Master = precision == Precision.Bf16 && master ? new Qwen2Weights(backend, config, DType.Float32) : null;
        Heads = new AttentionHeads(config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim);
    }

    public IBackend Backend { get; }
    public Qwen2Config Config { get; }

    /// <summary>The precision the forward and backward run in.</summary>
    public Precision Precision { get; }

    /// <summary>The storage dtype of the weights the forward reads, the activations and the KV cache.</summary>
    public DType Storage => Weights.DType;

    /// <summary>The weights the forward and backward read (the bf16 working copy in mixed precision).</summary>
    public Qwen2Weights Weights { get; }

    /// <summary>fp32 master weights (bf16 models built for training), or null (also once <see cref="ReleaseMaster"/> gave them up).</summary>
    public Qwen2Weights? Master { get; private set; }

    /// <summary>
    /// Frees the whole fp32 master: a data-parallel optimizer that keeps each rank's slice of it (ZeRO-1) calls this
    /// once it has copied its slice, and from then on it owns the fp32 parameters (and checkpoints them); the bf16
    /// working copy stays.
    /// </summary>
    public void ReleaseMaster()
    {
        Master?.Dispose();
        Master = null;
    }

    /// <summary>The fp32 parameters that training updates and checkpoints save: the master when there is one, else the weights.</summary>
    public Qwen2Weights Parameters => Master ?? Weights;

    /// <summary>HF's initialisation (see <see cref="Qwen2Weights.InitializeRandom"/>) of the parameters, and the working copy from them.</summary>
    public void InitializeRandom(int seed, float std = 0.02f)
    {
        Parameters.InitializeRandom(seed, std);
        if (Master is not null) Weights.CopyFrom(Master);
    }

    /// <summary>The attention geometry of every layer.</summary>
    public AttentionHeads Heads { get; }

    private float AttentionScale => Heads.DefaultScale;
    private float Eps => (float)Config.RmsNormEps;
    private float Theta => (float)Config.RopeTheta;

    // ------------------------------------------------------------------ forward

    /// <summary>
    /// Runs the decoder over a packed batch, saving activations for the backward. Returns the final
    /// hidden states [T, H] (a view into the arena).
    /// </summary>
    public Tensor Forward(PackedBatch batch, Qwen2Activations activations)
    {
        int rows = CheckCapacity(batch.TokenCount, activations);
        Backend.EmbeddingForward(batch.Tokens, Weights.Embedding, activations.Residuals[0].SliceRows(0, rows));
        RunLayers(activations, rows, batch.Positions, CausalAttention(batch));
        return FinalNorm(activations, rows);
    }

    /// <summary>The training forward's attention: causal within each packed sequence.</summary>
    private AttentionStep CausalAttention(PackedBatch batch) => (_, _, q, k, v, attention, lse) =>
        Backend.AttentionForward(q, k, v, batch.Sequences, Heads, AttentionScale, attention, lse);

    /// <summary>One attention implementation for <see cref="RunLayers"/>: fill attention [T, Hq*D] from q, k, v.</summary>
    internal delegate void AttentionStep(int layer, LayerActivations saved, Tensor q, Tensor k, Tensor v, Tensor attention, Tensor logSumExp);

    internal void RunLayers(Qwen2Activations act, int rows, Tensor positions, AttentionStep attend)
    {
        for (int l = 0; l < Config.NumHiddenLayers; l++) ForwardLayer(l, act, rows, positions, attend, writeOutput: true);
    }

    /// <summary>
    /// Layer l's forward from its input (the residual stream Residuals[l]) into its activations (Layers[l]) and, with
    /// <paramref name="writeOutput"/>, its output Residuals[l + 1]. A recomputation inside the backward leaves the output
    /// out (the backward reads only what comes before the MLP's down projection), and runs the same kernels on the same
    /// input, so what it writes is what the forward wrote, bit for bit.
    /// </summary>
    private void ForwardLayer(int l, Qwen2Activations act, int rows, Tensor positions, AttentionStep attend, bool writeOutput)
    {
        var c = Config;
        var w = Weights.Layers[l];
        var a = act.Layers[l];
        var x = act.Residuals[l].SliceRows(0, rows);
        var norm1 = a.Norm1.SliceRows(0, rows);
        Backend.RmsNormForward(x, w.InputNorm, Eps, norm1, a.InvRms1.SliceRows(0, rows));
        var q = a.Query.SliceRows(0, rows);
        var k = a.Key.SliceRows(0, rows);
        var v = a.Value.SliceRows(0, rows);
        Linear(norm1, w.QueryWeight, w.QueryBias, q);
        Linear(norm1, w.KeyWeight, w.KeyBias, k);
        Linear(norm1, w.ValueWeight, w.ValueBias, v);
        Backend.RopeForward(q, positions, c.NumAttentionHeads, c.HeadDim, Theta, q);
        Backend.RopeForward(k, positions, c.NumKeyValueHeads, c.HeadDim, Theta, k);
        var attention = a.Attention.SliceRows(0, rows);
        attend(l, a, q, k, v, attention, a.AttentionLse.SliceRows(0, rows));
        var projected = act.HiddenScratch.SliceRows(0, rows);
        Linear(attention, w.OutputWeight, null, projected);
        var middle = a.Middle.SliceRows(0, rows);
        Backend.Add(x, projected, middle);

        var norm2 = a.Norm2.SliceRows(0, rows);
        Backend.RmsNormForward(middle, w.PostAttentionNorm, Eps, norm2, a.InvRms2.SliceRows(0, rows));
        var gate = a.Gate.SliceRows(0, rows);
        var up = a.Up.SliceRows(0, rows);
        var activation = a.Activation.SliceRows(0, rows);
        Linear(norm2, w.GateWeight, null, gate);
        Linear(norm2, w.UpWeight, null, up);
        Backend.SwiGluForward(gate, up, activation);
        if (!writeOutput) return;
        Linear(activation, w.DownWeight, null, projected);
        Backend.Add(middle, projected, act.Residuals[l + 1].SliceRows(0, rows));
    }

    internal Tensor FinalNorm(Qwen2Activations act, int rows)
    {
        var hidden = act.FinalNorm.SliceRows(0, rows);
        Backend.RmsNormForward(act.Residuals[Config.NumHiddenLayers].SliceRows(0, rows), Weights.FinalNorm, Eps, hidden, act.FinalInvRms.SliceRows(0, rows));
        return hidden;
    }

    /// <summary>
    /// Per-token log-prob of <paramref name="targets"/> and full-vocabulary entropy at a temperature, from
    /// the hidden states of the last <see cref="Forward"/> (chunked over the vocabulary; logits never whole).
    /// targets Int32 [T]; logProbs, entropy [T].
    /// </summary>
    public void LogProbs(Qwen2Activations act, Tensor targets, float temperature, Tensor logProbs, Tensor entropy)
    {
        int rows = targets.Shape[0];
        Backend.LogProbForward(act.FinalNorm.SliceRows(0, rows), Weights.LmHead, targets, temperature, logProbs, entropy, act.LogProbLse.SliceRows(0, rows));
    }

    /// <summary>Logits [T, V] of every position (small models and generation only: this materialises them).</summary>
    public void Logits(Tensor hidden, Tensor logits) => Backend.MatMul(hidden, false, Weights.LmHead, true, logits);

    /// <summary>
    /// Logits divided by <paramref name="temperature"/> (&gt; 0), scaled inside the GEMM by 1/T as <see cref="LogProbs"/>
    /// scales its tiles, so the rollout engine samples from, and folds log-probs over, the very values the trainer does.
    /// </summary>
    public void TemperedLogits(Tensor hidden, float temperature, Tensor logits)
    {
        if (!(temperature > 0f)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "the temperature must be positive");
        Backend.MatMul(hidden, false, Weights.LmHead, true, logits, alpha: 1f / temperature);
    }

    // ------------------------------------------------------------------ backward

    /// <summary>
    /// Back-propagates dL/dlogProbs and dL/dentropy (null: none) of the last <see cref="LogProbs"/> call
    /// through the whole model, accumulating into <paramref name="gradients"/> (+=, so micro-batches add up).
    /// <para><paramref name="gradientsFinalFrom"/> (optional) is told, as the backward goes, the offset in the gradients'
    /// flat buffer from which this backward writes no more: after the LM head and the final norm
    /// (<see cref="Qwen2Weights.HeadFlatStart"/>), after each layer (<see cref="Qwen2Weights.LayerFlatStart"/>) and, after
    /// the embedding, 0; the operations that wrote them are queued on the backend by then. The data-parallel sum of the
    /// gradients starts there (<see cref="OR1.Native.Distributed.GradientReduction.ReadyFrom"/>). Needs flat gradients.</para>
    /// </summary>
    public void Backward(PackedBatch batch, Qwen2Activations act, Tensor targets, float temperature,
        Tensor dLogProbs, Tensor? dEntropy, Tensor entropy, Qwen2Weights gradients, Action<long>? gradientsFinalFrom = null)
    {
        if (act.IsInference)
            throw new ArgumentException("the activations are an inference arena (Qwen2Activations.ForInference): they keep nothing for a backward; " +
                                        "train with `new Qwen2Activations(...)`", nameof(act));
        if (gradientsFinalFrom is not null && gradients.Flat is null)
            throw new ArgumentException("reporting how far the gradients are final needs them in one flat buffer (Qwen2Weights with a flat multiple)", nameof(gradients));
        int rows = CheckCapacity(batch.TokenCount, act);
        var c = Config;
        var dHidden = act.GradHidden.SliceRows(0, rows);
        Backend.LogProbBackward(dLogProbs, dEntropy, act.FinalNorm.SliceRows(0, rows), Weights.LmHead, targets, temperature,
            entropy, act.LogProbLse.SliceRows(0, rows), dHidden, gradients.LmHead);
        var dResidual = act.GradResidual.SliceRows(0, rows);
        Backend.RmsNormBackward(dHidden, act.Residuals[c.NumHiddenLayers].SliceRows(0, rows), Weights.FinalNorm,
            act.FinalInvRms.SliceRows(0, rows), dResidual, gradients.FinalNorm);
        // Tied embeddings: the LM head's gradient is the embedding's, at the layout's start, final only at the end.
        gradientsFinalFrom?.Invoke(gradients.HeadFlatStart);

        var scratch = act.HiddenScratch.SliceRows(0, rows);
        var attend = act.Recompute ? CausalAttention(batch) : null;
        for (int l = c.NumHiddenLayers - 1; l >= 0; l--)
        {
            // With recomputation the forward kept only the layers' inputs: this layer's activations are made again here.
            if (attend is not null) ForwardLayer(l, act, rows, batch.Positions, attend, writeOutput: false);
            var w = Weights.Layers[l];
            var g = gradients.Layers[l];
            var a = act.Layers[l];
            // MLP: out = middle + down(silu(gate) * up); dResidual currently holds d(out).
            var dActivation = act.GradInter1.SliceRows(0, rows);
            var dGate = act.GradInter2.SliceRows(0, rows);
            var dUp = act.GradInter3.SliceRows(0, rows);
            LinearBackward(dResidual, a.Activation.SliceRows(0, rows), w.DownWeight, dActivation, g.DownWeight, null, accumulateInput: false);
            Backend.SwiGluBackward(dActivation, a.Gate.SliceRows(0, rows), a.Up.SliceRows(0, rows), dGate, dUp);
            var norm2 = a.Norm2.SliceRows(0, rows);
            LinearBackward(dGate, norm2, w.GateWeight, dHidden, g.GateWeight, null, accumulateInput: false);
            LinearBackward(dUp, norm2, w.UpWeight, dHidden, g.UpWeight, null, accumulateInput: true);
            Backend.RmsNormBackward(dHidden, a.Middle.SliceRows(0, rows), w.PostAttentionNorm, a.InvRms2.SliceRows(0, rows), scratch, g.PostAttentionNorm);
            Backend.Add(dResidual, scratch, dResidual); // now d(middle)

            // Attention: middle = x + o_proj(attention).
            var dAttention = act.GradAttention.SliceRows(0, rows);
            LinearBackward(dResidual, a.Attention.SliceRows(0, rows), w.OutputWeight, dAttention, g.OutputWeight, null, accumulateInput: false);
            var dq = act.GradQuery.SliceRows(0, rows);
            var dk = act.GradKey.SliceRows(0, rows);
            var dv = act.GradValue.SliceRows(0, rows);
            Backend.AttentionBackward(dAttention, a.Query.SliceRows(0, rows), a.Key.SliceRows(0, rows), a.Value.SliceRows(0, rows),
                a.Attention.SliceRows(0, rows), a.AttentionLse.SliceRows(0, rows), batch.Sequences, Heads, AttentionScale, dq, dk, dv);
            Backend.RopeBackward(dq, batch.Positions, c.NumAttentionHeads, c.HeadDim, Theta, dq);
            Backend.RopeBackward(dk, batch.Positions, c.NumKeyValueHeads, c.HeadDim, Theta, dk);
            var norm1 = a.Norm1.SliceRows(0, rows);
            LinearBackward(dq, norm1, w.QueryWeight, dHidden, g.QueryWeight, g.QueryBias, accumulateInput: false);
            LinearBackward(dk, norm1, w.KeyWeight, dHidden, g.KeyWeight, g.KeyBias, accumulateInput: true);
            LinearBackward(dv, norm1, w.ValueWeight, dHidden, g.ValueWeight, g.ValueBias, accumulateInput: true);
            Backend.RmsNormBackward(dHidden, act.Residuals[l].SliceRows(0, rows), w.InputNorm, a.InvRms1.SliceRows(0, rows), scratch, g.InputNorm);
            Backend.Add(dResidual, scratch, dResidual); // now d(x) of this layer = d(output) of the previous one
            gradientsFinalFrom?.Invoke(gradients.LayerFlatStart(l));
        }
        Backend.EmbeddingBackward(batch.Tokens, dResidual, gradients.Embedding);
        gradientsFinalFrom?.Invoke(0);
    }

    // ------------------------------------------------------------------ helpers

    /// <summary>y = x W^T (+ b). x [T, in], W [out, in], y [T, out].</summary>
    internal void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        Backend.MatMul(x, false, weight, true, y);
        if (bias is not null) Backend.AddBias(y, bias);
    }

    /// <summary>dX (= or +=) dY W; dW += dY^T X; dB += column sums of dY.</summary>
    private void LinearBackward(Tensor dY, Tensor x, Tensor weight, Tensor dX, Tensor dWeight, Tensor? dBias, bool accumulateInput)
    {
        Backend.MatMul(dY, false, weight, false, dX, beta: accumulateInput ? 1f : 0f);
        Backend.MatMul(dY, true, x, false, dWeight, beta: 1f);
        if (dBias is not null) Backend.BiasBackward(dY, dBias);
    }

    private static int CheckCapacity(int rows, Qwen2Activations act)
    {
        if (rows > act.Capacity)
            throw new ArgumentException($"the batch has {rows} tokens but the activation arena holds {act.Capacity}; allocate a larger Qwen2Activations or split the batch", nameof(act));
        return rows;
    }

    public void Dispose()
    {
        Weights.Dispose();
        Master?.Dispose();
    }
}
