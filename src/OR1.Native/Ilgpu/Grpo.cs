using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// GRPO advantages, per-segment broadcast and the MAGIC policy loss. Advantages: one group per reward
/// group (grid-stride), mean and unbiased std by group reductions in double. The loss: each group of a
/// fixed grid sums its grid-stride share of tokens in double, then one group adds the partials in group
/// order, so the value does not depend on scheduling. Backward is elementwise.
/// </summary>
internal static class IlgpuGrpo
{
    /// <summary>
    /// Partial sums per group of the loss: policy gradient, entropy, KL, weight clipped low, weight clipped
    /// high, ppo_kl (the clip fraction is the sum of the two clipped weights).
    /// </summary>
    public const int PartialTerms = 6;

    /// <summary>|ref - logp| beyond which verl's low_var_kl clamps the gap (so one far token cannot make the loss Inf).</summary>
    private const float KlGapLimit = 20f;
    /// <summary>|k3| beyond which verl's low_var_kl clamps the estimate.</summary>
    private const float K3Limit = 10f;

    [IlgpuKernel]
    public static void AdvantagesKernel(ArrayView<float> rewards, ArrayView<int> offsets, ArrayView<float> advantages, int groups, float epsilon)
    {
        var scratch = SharedMemory.Allocate<double>(32);
        for (int g = Grid.IdxX; g < groups; g += Grid.DimX)
        {
            int start = offsets[g], count = offsets[g + 1] - start;
            double mean = 0, std = 1;
            if (count > 1)
            {
                double sum = 0;
                for (int i = Group.IdxX; i < count; i += Group.DimX) sum += rewards[start + i];
                mean = Collectives.GroupSum(sum, scratch) / count;
                double squares = 0;
                for (int i = Group.IdxX; i < count; i += Group.DimX)
                {
                    double d = rewards[start + i] - mean;
                    squares += d * d;
                }
                std = Math.Sqrt(Collectives.GroupSum(squares, scratch) / (count - 1));
            }
            for (int i = Group.IdxX; i < count; i += Group.DimX)
                advantages[start + i] = (float)((rewards[start + i] - mean) / (std + epsilon));
        }
    }

    [IlgpuKernel]
    public static void BroadcastKernel(ArrayView<float> values, ArrayView<int> offsets, ArrayView<float> output, int segments)
    {
        for (int s = Grid.IdxX; s < segments; s += Grid.DimX)
        {
            int start = offsets[s], end = offsets[s + 1];
            float value = values[s];
            for (int t = start + Group.IdxX; t < end; t += Group.DimX) output[t] = value;
        }
    }

    /// <summary>Options of the loss as kernel scalars.</summary>
    public struct LossArgs
    {
        public int Count, UseKl;
        public float ClipLow, ClipHigh, EntropyCoefficient, KlCoefficient;
    }

    /// <summary>
    /// rho = exp(logp - old); surrogate = min(rho A, clip(rho) A) with ties to the unclipped branch (whose
    /// gradient torch's clamp passes at the boundary), as in the Cpu backend.
    /// </summary>
    private static float Surrogate(float logProb, float oldLogProb, float advantage, LossArgs a, out float ratio, out bool clipped)
    {
        ratio = MathF.Exp(logProb - oldLogProb);
        float unclipped = ratio * advantage;
        float clippedRatio = MathF.Min(MathF.Max(ratio, 1f - a.ClipLow), 1f + a.ClipHigh);
        float clippedValue = clippedRatio * advantage;
        clipped = clippedValue < unclipped;
        return clipped ? clippedValue : unclipped;
    }

    /// <summary>k3 = clamp(exp(d) - d - 1, -10, 10), d = clamp(ref - logp, -20, 20), in double as in the Cpu backend.</summary>
    private static double ClampedK3(float referenceLogProb, float logProb)
    {
        double d = Math.Min(Math.Max(referenceLogProb - logProb, -KlGapLimit), KlGapLimit);
        return Math.Min(Math.Max(Math.Exp(d) - d - 1, -K3Limit), K3Limit);
    }

    /// <summary>
    /// dk3/dlogp = 1 - exp(ref - logp) where both clamps pass the gradient (torch: min &lt;= x &lt;= max), else 0;
    /// k3 &gt;= 0, so only its upper clamp can stop it. A NaN or Inf gap fails the tests and gives 0.
    /// </summary>
    private static float ClampedK3Gradient(float referenceLogProb, float logProb)
    {
        float d = referenceLogProb - logProb;
        float e = MathF.Exp(d);
        bool passes = d >= -KlGapLimit && d <= KlGapLimit && e - d - 1f <= K3Limit;
        return passes ? 1f - e : 0f;
    }

    /// <summary>Per-group partial sums in double: partials[group * PartialTerms + term].</summary>
    [IlgpuKernel]
    public static void LossPartialsKernel(ArrayView<float> logProbs, ArrayView<float> oldLogProbs, ArrayView<float> advantages,
        ArrayView<float> entropy, ArrayView<float> weights, ArrayView<float> reference, ArrayView<double> partials, LossArgs a)
    {
        var scratch = SharedMemory.Allocate<double>(32);
        double pg = 0, ent = 0, kl = 0, clippedLow = 0, clippedHigh = 0, ppoKl = 0;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long t = Grid.GlobalIndex.X; t < a.Count; t += stride)
        {
            float w = weights[t];
            if (w == 0f) continue;
            float logProb = logProbs[t], oldLogProb = oldLogProbs[t];
            float s = Surrogate(logProb, oldLogProb, advantages[t], a, out float ratio, out bool clipped);
            pg -= (double)w * s;
            ent += (double)w * entropy[t];
            // A clipped token's ratio lies outside [1 - ClipLow, 1 + ClipHigh] (the clamp changed it): not below is above.
            if (clipped)
            {
                if (ratio < 1f - a.ClipLow) clippedLow += w;
                else clippedHigh += w;
            }
            // In double, where the difference of two floats is exact, as in the reference.
            ppoKl += w * ((double)oldLogProb - logProb);
            if (a.UseKl != 0) kl += w * ClampedK3(reference[t], logProb);
        }
        pg = Collectives.GroupSum(pg, scratch);
        ent = Collectives.GroupSum(ent, scratch);
        kl = Collectives.GroupSum(kl, scratch);
        clippedLow = Collectives.GroupSum(clippedLow, scratch);
        clippedHigh = Collectives.GroupSum(clippedHigh, scratch);
        ppoKl = Collectives.GroupSum(ppoKl, scratch);
        if (Group.IdxX == 0)
        {
            int at = Grid.IdxX * PartialTerms;
            partials[at] = pg;
            partials[at + 1] = ent;
            partials[at + 2] = kl;
            partials[at + 3] = clippedLow;
            partials[at + 4] = clippedHigh;
            partials[at + 5] = ppoKl;
        }
    }

    /// <summary>One thread adds the group partials in order and writes the loss terms.</summary>
    [IlgpuKernel]
    public static void LossFinishKernel(ArrayView<double> partials, ArrayView<float> lossTerms, int groups, LossArgs a)
    {
        if (Grid.GlobalIndex.X != 0) return;
        double pg = 0, ent = 0, kl = 0, clippedLow = 0, clippedHigh = 0, ppoKl = 0;
        for (int g = 0; g < groups; g++)
        {
            int at = g * PartialTerms;
            pg += partials[at];
            ent += partials[at + 1];
            kl += partials[at + 2];
            clippedLow += partials[at + 3];
            clippedHigh += partials[at + 4];
            ppoKl += partials[at + 5];
        }
        lossTerms[PolicyLossTerms.PolicyGradient] = (float)pg;
        lossTerms[PolicyLossTerms.Entropy] = (float)ent;
        lossTerms[PolicyLossTerms.Kl] = (float)kl;
        lossTerms[PolicyLossTerms.ClipFraction] = (float)(clippedLow + clippedHigh);
        lossTerms[PolicyLossTerms.ClipFractionLow] = (float)clippedLow;
        lossTerms[PolicyLossTerms.ClipFractionHigh] = (float)clippedHigh;
        lossTerms[PolicyLossTerms.PpoKl] = (float)ppoKl;
        lossTerms[PolicyLossTerms.Total] = (float)(pg - a.EntropyCoefficient * ent + a.KlCoefficient * kl);
    }

    [IlgpuKernel]
    public static void LossBackwardKernel(ArrayView<float> logProbs, ArrayView<float> oldLogProbs, ArrayView<float> advantages,
        ArrayView<float> weights, ArrayView<float> reference, ArrayView<float> dLogProbs, ArrayView<float> dEntropy, LossArgs a)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long t = Grid.GlobalIndex.X; t < a.Count; t += stride)
        {
            float w = weights[t];
            Surrogate(logProbs[t], oldLogProbs[t], advantages[t], a, out float ratio, out bool clipped);
            float d = clipped ? 0f : -w * ratio * advantages[t];
            if (a.UseKl != 0) d += w * a.KlCoefficient * ClampedK3Gradient(reference[t], logProbs[t]);
            dLogProbs[t] = d;
            dEntropy[t] = -w * a.EntropyCoefficient;
        }
    }

    // ---------------------------------------------------------------- host side

    public static LossArgs Args(PolicyLossOptions options, int count) => new()
    {
        Count = count,
        UseKl = options.KlCoefficient != 0f ? 1 : 0,
        ClipLow = options.ClipLow,
        ClipHigh = options.ClipHigh,
        EntropyCoefficient = options.EntropyCoefficient,
        KlCoefficient = options.KlCoefficient,
    };

    public static void Advantages(IlgpuDevice device, ArrayView<float> rewards, ArrayView<int> offsets, int groups, float epsilon, ArrayView<float> advantages)
    {
        if (groups == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, float>(AdvantagesKernel)(
            new KernelConfig(p.Groups(groups), p.BlockThreads), rewards, offsets, advantages, groups, epsilon);
    }

    public static void Broadcast(IlgpuDevice device, ArrayView<float> values, ArrayView<int> offsets, int segments, ArrayView<float> output)
    {
        if (segments == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<int>, ArrayView<float>, int>(BroadcastKernel)(
            new KernelConfig(p.Groups(segments), p.BlockThreads), values, offsets, output, segments);
    }

    /// <summary>Groups of the loss's partial-sum kernel; its partials buffer holds that many x <see cref="PartialTerms"/> doubles.</summary>
    public static int LossGroups(IlgpuDevice device, int count) => device.Profile.Groups(count, device.Profile.BlockThreads);

    public static void LossForward(IlgpuDevice device, ArrayView<float> logProbs, ArrayView<float> oldLogProbs, ArrayView<float> advantages,
        ArrayView<float> entropy, ArrayView<float> weights, ArrayView<float> reference, ArrayView<double> partials, ArrayView<float> lossTerms, LossArgs args)
    {
        var p = device.Profile;
        int groups = LossGroups(device, args.Count);
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<double>, LossArgs>(
            LossPartialsKernel)(new KernelConfig(groups, p.BlockThreads), logProbs, oldLogProbs, advantages, entropy, weights, reference, partials, args);
        device.Load<ArrayView<double>, ArrayView<float>, int, LossArgs>(LossFinishKernel)(new KernelConfig(1, p.WarpSize), partials, lossTerms, groups, args);
    }

    public static void LossBackward(IlgpuDevice device, ArrayView<float> logProbs, ArrayView<float> oldLogProbs, ArrayView<float> advantages,
        ArrayView<float> weights, ArrayView<float> reference, ArrayView<float> dLogProbs, ArrayView<float> dEntropy, LossArgs args)
    {
        if (args.Count == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LossArgs>(
            LossBackwardKernel)(new KernelConfig(p.Groups(args.Count, p.BlockThreads), p.BlockThreads),
            logProbs, oldLogProbs, advantages, weights, reference, dLogProbs, dEntropy, args);
    }
}
