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
    }

    // Tokens per range: the per-token work is an exp and a few flops, so ranges must be long to pay for a fork.
    private const int LossGrain = 1 << 15;

    public static void PolicyLossForward(float* logProbs, float* oldLogProbs, float* advantages, float* entropy,
        float* weights, float* referenceLogProbs, PolicyLossOptions options, int count, float* lossTerms)
    {
        int parts = Math.Max(1, CpuParallel.PartCount(count, LossGrain));
        // Four sums per range: policy gradient, entropy, KL, clipped weight.
        var sums = System.Buffers.ArrayPool<double>.Shared.Rent(parts * 4);
        try
        {
            CpuParallel.ForParts(count, parts, (part, start, end) =>
            {
                double pg = 0, ent = 0, kl = 0, clipped = 0;
                bool useKl = options.KlCoefficient != 0f;
                for (int t = start; t < end; t++)
                {
                    float w = weights[t];
                    if (w == 0f) continue;
                    var terms = new TokenTerms(logProbs[t], oldLogProbs[t], advantages[t], options);
                    pg -= (double)w * terms.Surrogate;
                    ent += (double)w * entropy[t];
                    if (terms.Clipped) clipped += w;
                    if (useKl)
                    {
                        double diff = referenceLogProbs[t] - logProbs[t];
                        kl += w * (Math.Exp(diff) - diff - 1);
                    }
                }
                sums[part * 4] = pg;
                sums[part * 4 + 1] = ent;
                sums[part * 4 + 2] = kl;
                sums[part * 4 + 3] = clipped;
            });
            double totalPg = 0, totalEnt = 0, totalKl = 0, totalClipped = 0;
            for (int p = 0; p < parts; p++)
            {
                totalPg += sums[p * 4];
                totalEnt += sums[p * 4 + 1];
                totalKl += sums[p * 4 + 2];
                totalClipped += sums[p * 4 + 3];
            }
            lossTerms[PolicyLossTerms.PolicyGradient] = (float)totalPg;
            lossTerms[PolicyLossTerms.Entropy] = (float)totalEnt;
            lossTerms[PolicyLossTerms.Kl] = (float)totalKl;
            lossTerms[PolicyLossTerms.ClipFraction] = (float)totalClipped;
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
                if (useKl) d += w * options.KlCoefficient * (1f - MathF.Exp(referenceLogProbs[t] - logProbs[t]));
                dLogProbs[t] = d;
                dEntropy[t] = -w * options.EntropyCoefficient;
            }
        });
    }
}
