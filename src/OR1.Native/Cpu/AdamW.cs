using System.Runtime.Intrinsics;

namespace OR1.Native.Cpu;

/// <summary>
/// AdamW with the operation order of torch.optim.AdamW's single-tensor path, so results match it to
/// fp32 rounding: decay, moment updates, then p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
/// The gradient scale (the global-norm clip factor) is fused into the read of the gradient.
/// </summary>
internal static unsafe class CpuAdamW
{
    public static void Step(float* parameter, float* gradient, float* m, float* v, long count,
        AdamWOptions options, bool decay, int step, float gradientScale)
    {
        // Scalars are formed in double and rounded once, as torch does with its Python-float hyper-parameters.
        float beta1 = (float)options.Beta1, beta2 = (float)options.Beta2, eps = (float)options.Epsilon;
        float decayFactor = decay ? (float)(1 - options.LearningRate * options.WeightDecay) : 1f;
        float stepSize = (float)(options.LearningRate / (1 - Math.Pow(options.Beta1, step)));
        float bc2Sqrt = (float)Math.Sqrt(1 - Math.Pow(options.Beta2, step));
        float oneMinusBeta1 = (float)(1 - options.Beta1), oneMinusBeta2 = (float)(1 - options.Beta2);
        CpuElementwise.ForRanges(count, (start, length) =>
        {
            float* p = parameter + start, g = gradient + start, mm = m + start, vv = v + start;
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var vScale = Vector256.Create(gradientScale);
                var vDecay = Vector256.Create(decayFactor);
                var vB1 = Vector256.Create(beta1);
                var vB2 = Vector256.Create(beta2);
                var v1B1 = Vector256.Create(oneMinusBeta1);
                var v1B2 = Vector256.Create(oneMinusBeta2);
                var vStep = Vector256.Create(stepSize);
                var vBc2 = Vector256.Create(bc2Sqrt);
                var vEps = Vector256.Create(eps);
                for (; i + 8 <= length; i += 8)
                {
                    var gi = Vector256.Load(g + i) * vScale;
                    var pi = Vector256.Load(p + i) * vDecay;
                    var mi = Vector256.Load(mm + i) * vB1 + gi * v1B1;
                    var vi = Vector256.Load(vv + i) * vB2 + gi * gi * v1B2;
                    var denom = Vector256.Sqrt(vi) / vBc2 + vEps;
                    pi -= vStep * mi / denom;
                    mi.Store(mm + i);
                    vi.Store(vv + i);
                    pi.Store(p + i);
                }
            }
            for (; i < length; i++)
            {
                float gi = g[i] * gradientScale;
                float pi = p[i] * decayFactor;
                float mi = mm[i] * beta1 + gi * oneMinusBeta1;
                float vi = vv[i] * beta2 + gi * gi * oneMinusBeta2;
                pi -= stepSize * mi / (MathF.Sqrt(vi) / bc2Sqrt + eps);
                mm[i] = mi;
                vv[i] = vi;
                p[i] = pi;
            }
        });
    }
}
