using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace OR1.Native.Cpu;

/// <summary>
/// RMSNorm as Qwen2 computes it in fp32: y = w * x / sqrt(mean(x^2) + eps). The forward saves 1/rms per
/// row so the backward needs one pass over x instead of two.
/// </summary>
internal static unsafe class CpuRmsNorm
{
    public static void Forward(float* x, float* weight, float eps, float* output, float* invRms, int rows, int width)
    {
        CpuParallel.For(rows, CpuElementwise.RowGrain(width), (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                // A fixed order: a row gets the same bits wherever it lies (the engine's decode row and the trainer's packed row).
                float r = 1f / MathF.Sqrt(FixedOrderSum.SumOfSquares(x + (long)n * width, width) / width + eps);
                invRms[n] = r;
                ScaleRow(x + (long)n * width, r, weight, output + (long)n * width, width);
            }
        });
    }

    /// <summary>
    /// y = (x r) w, rounded after each product as two passes would round, in one pass: two TensorPrimitives calls per row
    /// made the rollout engine's decode step (rows of 256) pay about as much in call overhead as in arithmetic (one pass:
    /// +1.4 % and +1.6 % on the engine's Groups case, interleaved in one process).
    /// </summary>
    private static void ScaleRow(float* x, float r, float* w, float* y, int width)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var rv = Vector256.Create(r);
            for (; i <= width - 8; i += 8) (Vector256.Load(x + i) * rv * Vector256.Load(w + i)).Store(y + i);
        }
        for (; i < width; i++) y[i] = x[i] * r * w[i];
    }

    /// <summary>
    /// dx_i = r (w_i g_i) - r^3 x_i / D * sum_j (w_j g_j x_j); dw_i += sum_n g_i x_i r.
    /// Two fused passes over each row (the dot product, then dx and dw together): separate
    /// TensorPrimitives calls made six passes, which spill a wide row (7B: 14 KB per operand) out of L1.
    /// dW is summed per thread range into partials and added in range order (deterministic).
    /// </summary>
    public static void Backward(float* dOutput, float* x, float* weight, float* invRms, float* dx, float* dWeight, int rows, int width)
    {
        int parts = CpuParallel.PartCount(rows, CpuElementwise.RowGrain(width));
        using var partials = new ScratchFloats(Math.Max(1, parts) * width);
        float* partial = partials.Pointer;
        new Span<float>(partial, Math.Max(1, parts) * width).Clear();
        CpuParallel.ForParts(rows, parts, (part, start, end) =>
        {
            float* dw = partial + (long)part * width;
            for (int n = start; n < end; n++)
                BackwardRow(dOutput + (long)n * width, x + (long)n * width, weight, invRms[n], dx + (long)n * width, dw, width);
        });
        var target = new Span<float>(dWeight, width);
        for (int p = 0; p < parts; p++)
            TensorPrimitives.Add(target, new ReadOnlySpan<float>(partial + (long)p * width, width), target);
    }

    private static void BackwardRow(float* g, float* x, float* w, float r, float* dx, float* dw, int width)
    {
        // Pass 1: dot = sum g w x, two accumulators to cover FMA latency.
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        int i = 0;
        for (; i <= width - 16; i += 16)
        {
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(g + i) * Vector256.Load(w + i), Vector256.Load(x + i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(g + i + 8) * Vector256.Load(w + i + 8), Vector256.Load(x + i + 8), acc1);
        }
        for (; i <= width - 8; i += 8)
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(g + i) * Vector256.Load(w + i), Vector256.Load(x + i), acc0);
        float dot = Vector256.Sum(acc0 + acc1);
        for (; i < width; i++) dot += g[i] * w[i] * x[i];

        // Pass 2: dx = r g w + c x with c = -r^3 dot / D; dw += (r g) x.
        float c = -r * r * r * dot / width;
        var rv = Vector256.Create(r);
        var cv = Vector256.Create(c);
        for (i = 0; i <= width - 8; i += 8)
        {
            var rg = Vector256.Load(g + i) * rv;
            var xv = Vector256.Load(x + i);
            Vector256.FusedMultiplyAdd(rg, Vector256.Load(w + i), cv * xv).Store(dx + i);
            Vector256.FusedMultiplyAdd(rg, xv, Vector256.Load(dw + i)).Store(dw + i);
        }
        for (; i < width; i++)
        {
            float rg = r * g[i];
            dx[i] = MathF.FusedMultiplyAdd(rg, w[i], c * x[i]);
            dw[i] = MathF.FusedMultiplyAdd(rg, x[i], dw[i]);
        }
    }
}
