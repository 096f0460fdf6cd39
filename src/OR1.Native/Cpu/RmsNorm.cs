using System.Numerics.Tensors;

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
            var w = new ReadOnlySpan<float>(weight, width);
            for (int n = start; n < end; n++)
            {
                var xRow = new ReadOnlySpan<float>(x + (long)n * width, width);
                var yRow = new Span<float>(output + (long)n * width, width);
                float r = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(xRow) / width + eps);
                invRms[n] = r;
                TensorPrimitives.Multiply(xRow, r, yRow);
                TensorPrimitives.Multiply(yRow, w, yRow);
            }
        });
    }

    /// <summary>
    /// dx_i = r (w_i g_i) - r^3 x_i / D * sum_j (w_j g_j x_j); dw_i += sum_n g_i x_i r.
    /// dW is summed per thread range into partials and added in range order (deterministic).
    /// </summary>
    public static void Backward(float* dOutput, float* x, float* weight, float* invRms, float* dx, float* dWeight, int rows, int width)
    {
        int parts = CpuParallel.PartCount(rows, CpuElementwise.RowGrain(width));
        using var partials = new ScratchFloats(Math.Max(1, parts) * width * 2);
        float* partial = partials.Pointer;
        new Span<float>(partial, Math.Max(1, parts) * width).Clear();
        float* rowScratch = partial + Math.Max(1, parts) * width;
        CpuParallel.ForParts(rows, parts, (part, start, end) =>
        {
            var w = new ReadOnlySpan<float>(weight, width);
            var dw = new Span<float>(partial + (long)part * width, width);
            // gw = g * w for one row; each part owns a row-sized slice of the scratch.
            var gw = new Span<float>(rowScratch + (long)part * width, width);
            for (int n = start; n < end; n++)
            {
                var g = new ReadOnlySpan<float>(dOutput + (long)n * width, width);
                var xRow = new ReadOnlySpan<float>(x + (long)n * width, width);
                var dxRow = new Span<float>(dx + (long)n * width, width);
                float r = invRms[n];
                TensorPrimitives.Multiply(g, w, gw);
                float dot = TensorPrimitives.Dot(gw, xRow);
                // dx = r * gw + (-r^3 dot / D) * x
                TensorPrimitives.Multiply(gw, r, dxRow);
                TensorPrimitives.MultiplyAdd(xRow, -r * r * r * dot / width, dxRow, dxRow);
                // dw += (g * r) * x
                TensorPrimitives.Multiply(g, r, gw);
                TensorPrimitives.MultiplyAdd(gw, xRow, dw, dw);
            }
        });
        var target = new Span<float>(dWeight, width);
        for (int p = 0; p < parts; p++)
            TensorPrimitives.Add(target, new ReadOnlySpan<float>(partial + (long)p * width, width), target);
    }
}
