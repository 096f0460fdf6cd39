using System.Numerics.Tensors;

namespace OR1.Native.Cpu;

/// <summary>
/// SwiGLU: y = silu(g) * u = g * sigmoid(g) * u. Processed in L1-sized blocks so the sigmoid is
/// computed once into a stack buffer and reused by the products.
/// </summary>
internal static unsafe class CpuSwiGlu
{
    private const int Block = 512;

    public static void Forward(float* gate, float* up, float* output, long count) =>
        CpuElementwise.ForRanges(count, (start, length) =>
        {
            Span<float> sig = stackalloc float[Block];
            for (int i = 0; i < length; i += Block)
            {
                int len = Math.Min(Block, length - i);
                var g = new ReadOnlySpan<float>(gate + start + i, len);
                var u = new ReadOnlySpan<float>(up + start + i, len);
                var y = new Span<float>(output + start + i, len);
                var s = sig[..len];
                TensorPrimitives.Sigmoid(g, s);
                TensorPrimitives.Multiply(g, s, s);
                TensorPrimitives.Multiply(s, u, y);
            }
        });

    /// <summary>du = dy * g * s; dg = dy * u * s * (1 + g * (1 - s)), s = sigmoid(g).</summary>
    public static void Backward(float* dOutput, float* gate, float* up, float* dGate, float* dUp, long count) =>
        CpuElementwise.ForRanges(count, (start, length) =>
        {
            Span<float> sig = stackalloc float[Block];
            Span<float> tmp = stackalloc float[Block];
            for (int i = 0; i < length; i += Block)
            {
                int len = Math.Min(Block, length - i);
                var dy = new ReadOnlySpan<float>(dOutput + start + i, len);
                var g = new ReadOnlySpan<float>(gate + start + i, len);
                var u = new ReadOnlySpan<float>(up + start + i, len);
                var dg = new Span<float>(dGate + start + i, len);
                var du = new Span<float>(dUp + start + i, len);
                var s = sig[..len];
                var t = tmp[..len];
                TensorPrimitives.Sigmoid(g, s);
                // t = dy * s; du = t * g; dg = t * u * (1 + g * (1 - s))
                TensorPrimitives.Multiply(dy, s, t);
                // dg = t * u * (1 + g - g*s): compute (1 + g*(1-s)) in place of s
                TensorPrimitives.MultiplyAdd(g, s, -1f, s);       // s <- g*s - 1
                TensorPrimitives.Subtract(g, s, s);               // s <- g - g*s + 1
                TensorPrimitives.Multiply(t, g, du);
                TensorPrimitives.Multiply(t, u, t);
                TensorPrimitives.Multiply(t, s, dg);
            }
        });
}
