namespace OR1.Native.Cpu;

/// <summary>
/// GRPO advantages and the MAGIC policy loss. Advantages touch one float per response: a single-threaded
/// loop. The loss runs over every response token of a batch (millions at a 16K context), split into
/// ranges over the kernel threads; each range sums in double and the ranges are added in order, so the
/// value is deterministic for a fixed thread count and insensitive to it in all but the last bits.
/// </summary>
internal static unsafe class CpuGrpo
{
    /// <summary>A = (r - mean) / (std + eps) per group, unbiased std; a group of one uses mean 0, std 1 (verl's rule).</summary>
    public static void Advantages(float* rewards, int[] groupOffsets, float epsilon, float* advantages)
    {
        for (int g = 0; g + 1 < groupOffsets.Length; g++)
        {
            int start = groupOffsets[g], count = groupOffsets[g + 1] - start;
            if (count == 0) continue;
            double mean = 0, std = 1;
            if (count > 1)
            {
                double sum = 0;
                for (int i = 0; i < count; i++) sum += rewards[start + i];
                mean = sum / count;
                double squares = 0;
                for (int i = 0; i < count; i++)
                {
                    double d = rewards[start + i] - mean;
                    squares += d * d;
                }
                std = Math.Sqrt(squares / (count - 1));
            }
            for (int i = 0; i < count; i++)
                advantages[start + i] = (float)((rewards[start + i] - mean) / (std + epsilon));
        }
    }

    public static void BroadcastSegments(float* values, int[] offsets, float* output)
    {
        for (int s = 0; s + 1 < offsets.Length; s++)
            new Span<float>(output + offsets[s], offsets[s + 1] - offsets[s]).Fill(values[s]);
    }

    /// <summary>Per-token pieces of the loss shared by forward and backward.</summary>
    private readonly struct TokenTerms
    {
        public readonly float Ratio;
        public readonly float Surrogate;
        public readonly bool Clipped;

        public TokenTerms(float logProb, float oldLogProb, float advantage, PolicyLossOptions options)
        {
            Ratio = MathF.Exp(logProb - oldLogProb);
            float unclipped = Ratio * advantage;
            float clippedRatio = Math.Clamp(Ratio, 1f - options.ClipLow, 1f + options.ClipHigh);
            float clipped = clippedRatio * advantage;
            // Ties go to the unclipped branch, whose gradient is rho * A (torch's clamp passes the gradient at the boundary).
            Clipped = clipped < unclipped;
            Surrogate = Clipped ? clipped : unclipped;
        }

        /// <summary>
        /// Which bound a clipped token hit: clipped &lt; unclipped implies clamp(rho) != rho, so rho lies outside
        /// [1 - ClipLow, 1 + ClipHigh] (the same fp32 bounds as the clamp) and "not below" means "above".
        /// </summary>
        public bool ClippedLow(PolicyLossOptions options) => Ratio < 1f - options.ClipLow;
    }

    /// <summary>|ref - logp| beyond which verl's low_var_kl clamps the gap.</summary>
    private const float KlGapLimit = 20f;
    /// <summary>|k3| beyond which verl's low_var_kl clamps the estimate.</summary>
    private const double K3Limit = 10;

    /// <summary>k3 = clamp(exp(d) - d - 1, -10, 10), d = clamp(ref - logp, -20, 20); in double, so exp(20) is no overflow.</summary>
    private static double ClampedK3(float referenceLogProb, float logProb)
    {
        double d = Math.Clamp(referenceLogProb - logProb, -KlGapLimit, KlGapLimit);
        return Math.Clamp(Math.Exp(d) - d - 1, -K3Limit, K3Limit);
    }

    /// <summary>
    /// dk3/dlogp = 1 - exp(ref - logp) where both clamps pass the gradient (torch: min &lt;= x &lt;= max), else 0.
    /// k3 &gt;= 0, so of the k3 clamp only the upper bound can stop it; a gap beyond 20 makes k3 &gt; 10 anyway, but
    /// both tests are kept as verl's graph has them. A NaN or Inf gap fails them and gives 0, not NaN.
    /// </summary>
    private static float ClampedK3Gradient(float referenceLogProb, float logProb)
    {
        float d = referenceLogProb - logProb;
        float e = MathF.Exp(d);
        bool passes = d >= -KlGapLimit && d <= KlGapLimit && e - d - 1f <= (float)K3Limit;
        return passes ? 1f - e : 0f;
    }

    // Tokens per range: the per-token work is an exp and a few flops, so ranges must be long to pay for a fork.
    private const int LossGrain = 1 << 15;

    // Sums per range, in this order: policy gradient, entropy, KL, weight clipped low, weight clipped high, ppo_kl.
    private const int LossSums = 6;

    public static void PolicyLossForward(float* logProbs, float* oldLogProbs, float* advantages, float* entropy,
        float* weights, float* referenceLogProbs, PolicyLossOptions options, int count, float* lossTerms)
    {
        int parts = Math.Max(1, CpuParallel.PartCount(count, LossGrain));
        var sums = System.Buffers.ArrayPool<double>.Shared.Rent(parts * LossSums);
        try
        {
            CpuParallel.ForParts(count, parts, (part, start, end) =>
            {
                double pg = 0, ent = 0, kl = 0, clippedLow = 0, clippedHigh = 0, ppoKl = 0;
                bool useKl = options.KlCoefficient != 0f;
                for (int t = start; t < end; t++)
                {
                    float w = weights[t];
                    if (w == 0f) continue;
                    var terms = new TokenTerms(logProbs[t], oldLogProbs[t], advantages[t], options);
                    pg -= (double)w * terms.Surrogate;
                    ent += (double)w * entropy[t];
                    if (terms.Clipped)
                    {
                        if (terms.ClippedLow(options)) clippedLow += w;
                        else clippedHigh += w;
                    }
                    // In double: the difference of two floats is exact there, as in the reference.
                    ppoKl += w * ((double)oldLogProbs[t] - logProbs[t]);
                    if (useKl) kl += w * ClampedK3(referenceLogProbs[t], logProbs[t]);
                }
                int at = part * LossSums;
                sums[at] = pg;
                sums[at + 1] = ent;
                sums[at + 2] = kl;
                sums[at + 3] = clippedLow;
                sums[at + 4] = clippedHigh;
                sums[at + 5] = ppoKl;
            });
            Span<double> total = stackalloc double[LossSums];
            total.Clear();
            for (int p = 0; p < parts; p++)
            {
                for (int i = 0; i < LossSums; i++) total[i] += sums[p * LossSums + i];
            }
            double totalPg = total[0], totalEnt = total[1], totalKl = total[2];
            lossTerms[PolicyLossTerms.PolicyGradient] = (float)totalPg;
            lossTerms[PolicyLossTerms.Entropy] = (float)totalEnt;
            lossTerms[PolicyLossTerms.Kl] = (float)totalKl;
            // The total clipped weight is the sum of its two sides, so ClipFraction = Low + High up to fp32 rounding.
            lossTerms[PolicyLossTerms.ClipFraction] = (float)(total[3] + total[4]);
            lossTerms[PolicyLossTerms.ClipFractionLow] = (float)total[3];
            lossTerms[PolicyLossTerms.ClipFractionHigh] = (float)total[4];
            lossTerms[PolicyLossTerms.PpoKl] = (float)total[5];
            lossTerms[PolicyLossTerms.Total] = (float)(totalPg - options.EntropyCoefficient * totalEnt + options.KlCoefficient * totalKl);
        }
        finally
        {
            System.Buffers.ArrayPool<double>.Shared.Return(sums);
        }
    }

    public static void PolicyLossBackward(float* logProbs, float* oldLogProbs, float* advantages, float* weights,
        float* referenceLogProbs, PolicyLossOptions options, int count, float* dLogProbs, float* dEntropy)
    {
        bool useKl = options.KlCoefficient != 0f;
        CpuParallel.For(count, LossGrain, (start, end) =>
        {
            for (int t = start; t < end; t++)
            {
                float w = weights[t];
                var terms = new TokenTerms(logProbs[t], oldLogProbs[t], advantages[t], options);
                // d(rho * A)/dlogp = rho * A on the unclipped branch; the clipped branch is constant in logp.
                float d = terms.Clipped ? 0f : -w * terms.Ratio * advantages[t];
                if (useKl) d += w * options.KlCoefficient * ClampedK3Gradient(referenceLogProbs[t], logProbs[t]);
                dLogProbs[t] = d;
                dEntropy[t] = -w * options.EntropyCoefficient;
            }
        });
    }
}
