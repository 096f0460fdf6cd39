namespace OR1.Tests.Reference;

/// <summary>
/// GRPO advantages, segment broadcast and the MAGIC policy loss (Skywork-OR1 eq. 3.1):
/// L = -sum_t w_t [min(rho A, clip(rho, 1 - epsLow, 1 + epsHigh) A) + alpha H_t] + beta sum_t w_t k3_t,
/// rho = exp(logp - oldLogp), k3 = clamp(exp(d) - d - 1, -10, 10) with d = clamp(ref - logp, -20, 20)
/// (verl's kl_penalty "low_var_kl"; torch's clamp passes the gradient on [min, max], boundaries included).
/// </summary>
public static class GrpoReference
{
    /// <summary>Indices of the loss-terms array; the same order as OR1.Native.PolicyLossTerms.</summary>
    public static class Terms
    {
        /// <summary>PolicyGradient - alpha * Entropy + beta * Kl: what the backward differentiates.</summary>
        public const int Total = 0;
        /// <summary>-sum_t w_t min(rho A, clip(rho) A).</summary>
        public const int PolicyGradient = 1;
        /// <summary>sum_t w_t H_t.</summary>
        public const int Entropy = 2;
        /// <summary>sum_t w_t k3_t (clamped), 0 when the KL coefficient is 0.</summary>
        public const int Kl = 3;
        /// <summary>sum_t w_t [clip(rho) A &lt; rho A] = ClipFractionLow + ClipFractionHigh.</summary>
        public const int ClipFraction = 4;
        /// <summary>sum_t w_t [clip(rho) A &lt; rho A and rho &lt; 1 - epsLow].</summary>
        public const int ClipFractionLow = 5;
        /// <summary>sum_t w_t [clip(rho) A &lt; rho A and rho &gt; 1 + epsHigh].</summary>
        public const int ClipFractionHigh = 6;
        /// <summary>sum_t w_t (oldLogp_t - logp_t): verl's ppo_kl.</summary>
        public const int PpoKl = 7;
        /// <summary>Number of terms.</summary>
        public const int Count = 8;
    }

    /// <summary>
    /// A = (r - mean) / (std + epsilon) within each group [offsets[g], offsets[g + 1]), std unbiased (n - 1).
    /// A group of one uses mean 0, std 1; a group whose rewards are all equal gets A = 0 exactly.
    /// </summary>
    public static double[] Advantages(double[] rewards, int[] offsets, double epsilon)
    {
        CheckOffsets(offsets, rewards.Length, nameof(rewards));
        var advantages = new double[rewards.Length];
        for (int g = 0; g + 1 < offsets.Length; g++)
        {
            int start = offsets[g], count = offsets[g + 1] - offsets[g];
            if (count == 0) continue;
            if (count == 1)
            {
                advantages[start] = rewards[start] / (1 + epsilon);
                continue;
            }
            bool allEqual = true;
            for (int i = 1; i < count; i++) allEqual &= rewards[start + i] == rewards[start];
            // The mean of equal values can round to a neighbour of them, and that rounding divided by
            // epsilon would be a spurious non-zero advantage; the definition says such a group carries no signal.
            if (allEqual) continue;
            double mean = 0;
            for (int i = 0; i < count; i++) mean += rewards[start + i];
            mean /= count;
            double squares = 0;
            for (int i = 0; i < count; i++) squares += (rewards[start + i] - mean) * (rewards[start + i] - mean);
            double std = Math.Sqrt(squares / (count - 1));
            for (int i = 0; i < count; i++) advantages[start + i] = (rewards[start + i] - mean) / (std + epsilon);
        }
        return advantages;
    }

    /// <summary>output[t] = values[s] for every t in segment s = [offsets[s], offsets[s + 1]).</summary>
    public static double[] BroadcastSegments(double[] values, int[] offsets)
    {
        if (values.Length != offsets.Length - 1) throw new ArgumentException($"{values.Length} values for {offsets.Length - 1} segments", nameof(values));
        CheckOffsets(offsets, offsets[^1], nameof(offsets));
        var output = new double[offsets[^1]];
        for (int s = 0; s < values.Length; s++)
        {
            for (int t = offsets[s]; t < offsets[s + 1]; t++) output[t] = values[s];
        }
        return output;
    }

    /// <summary>
    /// The loss terms in <see cref="Terms"/> order. referenceLogProbs may be null only when klCoefficient is 0;
    /// when klCoefficient is 0 the Kl term is 0 whatever it holds.
    /// </summary>
    public static double[] PolicyLossForward(double[] logProbs, double[] oldLogProbs, double[] advantages, double[] entropy,
        double[] tokenWeights, double[]? referenceLogProbs, double clipLow, double clipHigh, double entropyCoefficient, double klCoefficient)
    {
        int count = CheckTokens(logProbs, oldLogProbs, advantages, tokenWeights, referenceLogProbs, klCoefficient);
        if (entropy.Length != count) throw new ArgumentException($"entropy has {entropy.Length} elements, expected {count}", nameof(entropy));
        var terms = new double[Terms.Count];
        for (int t = 0; t < count; t++)
        {
            double w = tokenWeights[t];
            (double surrogate, bool clipped) = Surrogate(logProbs[t], oldLogProbs[t], advantages[t], clipLow, clipHigh);
            terms[Terms.PolicyGradient] -= w * surrogate;
            terms[Terms.Entropy] += w * entropy[t];
            if (klCoefficient != 0) terms[Terms.Kl] += w * K3(referenceLogProbs![t] - logProbs[t]);
            if (clipped)
            {
                double rho = Math.Exp(logProbs[t] - oldLogProbs[t]);
                if (rho < 1 - clipLow) terms[Terms.ClipFractionLow] += w;
                else if (rho > 1 + clipHigh) terms[Terms.ClipFractionHigh] += w;
                else throw new InvalidOperationException($"token {t} is clipped with rho = {rho} inside the clip range");
            }
            terms[Terms.PpoKl] += w * (oldLogProbs[t] - logProbs[t]);
        }
        terms[Terms.ClipFraction] = terms[Terms.ClipFractionLow] + terms[Terms.ClipFractionHigh];
        terms[Terms.Total] = terms[Terms.PolicyGradient] - entropyCoefficient * terms[Terms.Entropy] + klCoefficient * terms[Terms.Kl];
        return terms;
    }

    /// <summary>
    /// dTotal/dlogProbs and dTotal/dentropy per token. The surrogate's derivative is rho A where the unclipped
    /// branch is selected (ties included) and 0 where the clipped branch is strictly smaller; the KL term adds
    /// w beta <see cref="K3Gradient"/>(ref - logp); dentropy = -w alpha.
    /// </summary>
    public static (double[] DLogProbs, double[] DEntropy) PolicyLossBackward(double[] logProbs, double[] oldLogProbs, double[] advantages,
        double[] tokenWeights, double[]? referenceLogProbs, double clipLow, double clipHigh, double entropyCoefficient, double klCoefficient)
    {
        int count = CheckTokens(logProbs, oldLogProbs, advantages, tokenWeights, referenceLogProbs, klCoefficient);
        var dLogProbs = new double[count];
        var dEntropy = new double[count];
        for (int t = 0; t < count; t++)
        {
            double w = tokenWeights[t];
            double rho = Math.Exp(logProbs[t] - oldLogProbs[t]);
            (_, bool clipped) = Surrogate(logProbs[t], oldLogProbs[t], advantages[t], clipLow, clipHigh);
            double d = clipped ? 0 : -w * rho * advantages[t];
            if (klCoefficient != 0) d += w * klCoefficient * K3Gradient(referenceLogProbs![t] - logProbs[t]);
            dLogProbs[t] = d;
            dEntropy[t] = -w * entropyCoefficient;
        }
        return (dLogProbs, dEntropy);
    }

    /// <summary>|ref - logp| beyond which low_var_kl clamps the gap.</summary>
    public const double KlGapLimit = 20;
    /// <summary>|k3| beyond which low_var_kl clamps the estimate.</summary>
    public const double K3Limit = 10;

    /// <summary>k3 of a gap d = ref - logp: clamp(exp(d') - d' - 1, -10, 10) with d' = clamp(d, -20, 20).</summary>
    public static double K3(double gap)
    {
        double d = Math.Clamp(gap, -KlGapLimit, KlGapLimit);
        return Math.Clamp(Math.Exp(d) - d - 1, -K3Limit, K3Limit);
    }

    /// <summary>
    /// dk3/dlogp at a gap d = ref - logp, torch's clamp semantics (the gradient passes where min &lt;= x &lt;= max):
    /// 1 - exp(d) where -20 &lt;= d &lt;= 20 and -10 &lt;= exp(d) - d - 1 &lt;= 10, else 0.
    /// </summary>
    public static double K3Gradient(double gap)
    {
        if (!(gap >= -KlGapLimit && gap <= KlGapLimit)) return 0;
        double k3 = Math.Exp(gap) - gap - 1;
        return k3 >= -K3Limit && k3 <= K3Limit ? 1 - Math.Exp(gap) : 0;
    }

    /// <summary>min(rho A, clip(rho) A), and whether the clipped branch is strictly the smaller one.</summary>
    public static (double Value, bool Clipped) Surrogate(double logProb, double oldLogProb, double advantage, double clipLow, double clipHigh)
    {
        double rho = Math.Exp(logProb - oldLogProb);
        double unclipped = rho * advantage;
        double clippedValue = Math.Clamp(rho, 1 - clipLow, 1 + clipHigh) * advantage;
        return clippedValue < unclipped ? (clippedValue, true) : (unclipped, false);
    }

    private static int CheckTokens(double[] logProbs, double[] oldLogProbs, double[] advantages, double[] tokenWeights,
        double[]? referenceLogProbs, double klCoefficient)
    {
        int count = logProbs.Length;
        if (oldLogProbs.Length != count) throw new ArgumentException($"oldLogProbs has {oldLogProbs.Length} elements, expected {count}", nameof(oldLogProbs));
        if (advantages.Length != count) throw new ArgumentException($"advantages has {advantages.Length} elements, expected {count}", nameof(advantages));
        if (tokenWeights.Length != count) throw new ArgumentException($"tokenWeights has {tokenWeights.Length} elements, expected {count}", nameof(tokenWeights));
        if (klCoefficient != 0 && referenceLogProbs == null)
            throw new ArgumentException("referenceLogProbs is required when the KL coefficient is non-zero", nameof(referenceLogProbs));
        if (referenceLogProbs != null && referenceLogProbs.Length != count)
            throw new ArgumentException($"referenceLogProbs has {referenceLogProbs.Length} elements, expected {count}", nameof(referenceLogProbs));
        return count;
    }

    private static void CheckOffsets(int[] offsets, int total, string name)
    {
        if (offsets.Length < 1 || offsets[0] != 0) throw new ArgumentException("offsets must start with 0", name);
        for (int s = 1; s < offsets.Length; s++)
        {
            if (offsets[s] < offsets[s - 1]) throw new ArgumentException($"offsets decrease at {s}", name);
        }
        if (offsets[^1] != total) throw new ArgumentException($"offsets cover {offsets[^1]} elements, the data has {total}", name);
    }
}
