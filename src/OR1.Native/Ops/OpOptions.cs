namespace OR1.Native;

/// <summary>Head geometry of grouped-query attention: query head h reads kv head h / (NumHeads / NumKvHeads).</summary>
/// <param name="NumHeads">Query heads.</param>
/// <param name="NumKvHeads">Key/value heads; must divide <paramref name="NumHeads"/>.</param>
/// <param name="HeadDim">Features per head.</param>
public readonly record struct AttentionHeads(int NumHeads, int NumKvHeads, int HeadDim)
{
    /// <summary>Width of a query row: NumHeads * HeadDim.</summary>
    public int QueryWidth => NumHeads * HeadDim;

    /// <summary>Width of a key or value row: NumKvHeads * HeadDim.</summary>
    public int KvWidth => NumKvHeads * HeadDim;

    /// <summary>Query heads per kv head.</summary>
    public int GroupSize => NumHeads / NumKvHeads;

    /// <summary>The usual softmax scale 1 / sqrt(HeadDim).</summary>
    public float DefaultScale => 1f / MathF.Sqrt(HeadDim);
}

/// <summary>
/// Options of the MAGIC policy loss (Skywork-OR1 eq. 3.1) over tokens t with weights w_t:
/// L = -sum_t w_t [ min(rho_t A_t, clip(rho_t, 1 - ClipLow, 1 + ClipHigh) A_t) + EntropyCoefficient H_t ]
///     + KlCoefficient sum_t w_t k3_t,   rho_t = exp(logp_t - oldLogp_t),
/// k3_t = clamp(exp(d_t) - d_t - 1, -10, 10) with d_t = clamp(ref_t - logp_t, -20, 20) (only when KlCoefficient
/// is non-zero): verl's "low_var_kl", whose clamps keep one token far from the reference from making the
/// loss Inf. Its gradient follows torch's clamp (passed where min &lt;= x &lt;= max, boundaries included, 0
/// outside): dk3/dlogp = 1 - exp(ref_t - logp_t) where |ref_t - logp_t| &lt;= 20 and the unclamped k3 &lt;= 10, else 0.
/// </summary>
/// <param name="ClipLow">eps_low of the clipped ratio.</param>
/// <param name="ClipHigh">eps_high of the clipped ratio.</param>
/// <param name="EntropyCoefficient">alpha_k = c_k * enabled_k, the entropy bonus weight.</param>
/// <param name="KlCoefficient">Weight of the k3 KL-to-reference penalty; 0 (off) by default.</param>
public readonly record struct PolicyLossOptions(
    float ClipLow = 0.2f,
    float ClipHigh = 0.2f,
    float EntropyCoefficient = 0f,
    float KlCoefficient = 0f)
{
    /// <summary>The recipe's defaults (eps_low = eps_high = 0.2, no entropy bonus, no KL); <c>new()</c> must not mean all zeros.</summary>
    public PolicyLossOptions() : this(0.2f) { }
}

/// <summary>
/// Indices into the loss-terms tensor written by <see cref="IBackend.PolicyLossForward"/>. Every term is a
/// weighted sum over tokens (in double, then rounded to fp32), so with the token-mean weights 1/T it is a mean.
/// </summary>
public static class PolicyLossTerms
{
    /// <summary>The loss L that the backward differentiates: PolicyGradient - alpha * Entropy + beta * Kl.</summary>
    public const int Total = 0;
    /// <summary>-sum_t w_t min(rho A, clip(rho) A).</summary>
    public const int PolicyGradient = 1;
    /// <summary>sum_t w_t H_t.</summary>
    public const int Entropy = 2;
    /// <summary>sum_t w_t k3_t, k3 clamped as in <see cref="PolicyLossOptions"/> (0 when the KL term is off).</summary>
    public const int Kl = 3;
    /// <summary>
    /// sum_t w_t [the clipped branch is active, so the token's policy gradient is zero]
    /// = <see cref="ClipFractionLow"/> + <see cref="ClipFractionHigh"/>.
    /// </summary>
    public const int ClipFraction = 4;
    /// <summary>sum_t w_t [clipped and rho_t &lt; 1 - ClipLow]: the ratio hit its lower bound (only with A_t &lt; 0).</summary>
    public const int ClipFractionLow = 5;
    /// <summary>sum_t w_t [clipped and rho_t &gt; 1 + ClipHigh]: the ratio hit its upper bound (only with A_t &gt; 0).</summary>
    public const int ClipFractionHigh = 6;
    /// <summary>sum_t w_t (oldLogp_t - logp_t): verl's ppo_kl, the approximate KL of the new policy from the old one.</summary>
    public const int PpoKl = 7;
    /// <summary>Length of the loss-terms tensor.</summary>
    public const int Count = 8;
}

/// <summary>
/// AdamW hyper-parameters with torch.optim.AdamW semantics (decoupled weight decay, bias correction).
/// Doubles, like the Python floats torch receives: derived constants such as 1 - beta2 are formed in
/// double and only then rounded to fp32, exactly as torch does (1 - 0.999f would be off by 5e-5).
/// </summary>
/// <param name="LearningRate">Step size.</param>
/// <param name="Beta1">First-moment decay.</param>
/// <param name="Beta2">Second-moment decay.</param>
/// <param name="Epsilon">Added to sqrt of the bias-corrected second moment.</param>
/// <param name="WeightDecay">Decoupled decay: p -= lr * WeightDecay * p before the Adam update.</param>
public readonly record struct AdamWOptions(
    double LearningRate,
    double Beta1 = 0.9,
    double Beta2 = 0.999,
    double Epsilon = 1e-8,
    double WeightDecay = 0.01);

/// <summary>One parameter tensor with its gradient and moment buffers, all of the same shape.</summary>
/// <param name="Parameter">Updated in place.</param>
/// <param name="Gradient">Read only (multiplied by the step's gradient scale).</param>
/// <param name="FirstMoment">Exponential average of gradients, updated in place.</param>
/// <param name="SecondMoment">Exponential average of squared gradients, updated in place.</param>
/// <param name="ApplyWeightDecay">False exempts this tensor from weight decay.</param>
/// <param name="WorkingCopy">Mixed precision: a BFloat16 tensor of the parameter's shape that the forward pass reads;
/// the step refreshes it from the updated fp32 parameter (round to nearest even) in the same pass. Null: none.</param>
public readonly record struct AdamWSlot(
    Tensor Parameter,
    Tensor Gradient,
    Tensor FirstMoment,
    Tensor SecondMoment,
    bool ApplyWeightDecay = true,
    Tensor? WorkingCopy = null);

/// <summary>How a next token is drawn from logits.</summary>
/// <param name="Temperature">Logits are divided by it; 0 means greedy (argmax).</param>
/// <param name="TopP">Nucleus mass in (0, 1]; 1 disables.</param>
/// <param name="TopK">Keep the K most likely tokens; 0 disables.</param>
public readonly record struct SamplingOptions(float Temperature = 1f, float TopP = 1f, int TopK = 0)
{
    /// <summary>The recipe's rollout setting: temperature 1, no top-p, no top-k; <c>new()</c> must not mean greedy with top-p 0.</summary>
    public SamplingOptions() : this(1f) { }
}
