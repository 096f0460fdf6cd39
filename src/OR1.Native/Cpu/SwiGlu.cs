using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

/// <summary>
/// SwiGLU: y = silu(g) * u = g * sigmoid(g) * u. The exponential is the cost (the op is otherwise a
/// stream of three planes), so the AVX2 path fuses everything into one pass with a polynomial 2^x
/// (<see cref="FastMath"/>) instead of three TensorPrimitives passes around a library exp.
/// </summary>
internal static unsafe class CpuSwiGlu
{
    private const int Block = 512;

    public static void Forward(float* gate, float* up, float* output, long count) =>
        CpuElementwise.ForRanges(count, (start, length) =>
        {
            float* g = gate + start, u = up + start, y = output + start;
            int i = 0;
            if (FastMath.IsSupported)
            {
                for (; i + 8 <= length; i += 8)
                {
                    var gv = Avx.LoadVector256(g + i);
                    var s = FastMath.Sigmoid(gv);
                    Avx.Store(y + i, Avx.Multiply(Avx.Multiply(gv, s), Avx.LoadVector256(u + i)));
                }
            }
            if (i == length) return;
            // The ragged end through the same vector formula, so an element's bits do not depend on where a thread's
            // range ends (ranges follow the batch's size: the engine's decode rows would differ from the trainer's).
            if (FastMath.IsSupported)
            {
                var gv = Partial(g + i, length - i);
                Store(y + i, length - i, Avx.Multiply(Avx.Multiply(gv, FastMath.Sigmoid(gv)), Partial(u + i, length - i)));
            }
            else ForwardTail(g + i, u + i, y + i, length - i);
        });

    /// <summary>The first n (fewer than 8) floats at p, the other lanes 0.</summary>
    private static Vector256<float> Partial(float* p, int n)
    {
        var lanes = Vector256<float>.Zero;
        float* l = (float*)&lanes;
        for (int i = 0; i < n; i++) l[i] = p[i];
        return lanes;
    }

    /// <summary>Stores the first n (fewer than 8) lanes of v at p.</summary>
    private static void Store(float* p, int n, Vector256<float> v)
    {
        float* l = (float*)&v;
        for (int i = 0; i < n; i++) p[i] = l[i];
    }

    /// <summary>du = dy * g * s; dg = dy * u * s * (1 + g * (1 - s)), s = sigmoid(g).</summary>
    public static void Backward(float* dOutput, float* gate, float* up, float* dGate, float* dUp, long count) =>
        CpuElementwise.ForRanges(count, (start, length) =>
        {
            float* dy = dOutput + start, g = gate + start, u = up + start, dg = dGate + start, du = dUp + start;
            int i = 0;
            if (FastMath.IsSupported)
            {
                for (; i + 8 <= length; i += 8)
                {
                    var (dgv, duv) = BackwardVector(Avx.LoadVector256(dy + i), Avx.LoadVector256(g + i), Avx.LoadVector256(u + i));
                    Avx.Store(du + i, duv);
                    Avx.Store(dg + i, dgv);
                }
                if (i < length)
                {
                    // As the forward's ragged end: the same formula whatever the range.
                    int n = length - i;
                    var (dgv, duv) = BackwardVector(Partial(dy + i, n), Partial(g + i, n), Partial(u + i, n));
                    Store(du + i, n, duv);
                    Store(dg + i, n, dgv);
                }
                return;
            }
            BackwardTail(dy, g, u, dg, du, length);
        });

    private static (Vector256<float> DGate, Vector256<float> DUp) BackwardVector(Vector256<float> dy, Vector256<float> gv, Vector256<float> uv)
    {
        var s = FastMath.Sigmoid(gv);
        var t = Avx.Multiply(dy, s);
        // 1 + g (1 - s) = g - g s + 1
        var factor = Avx.Add(Fma.MultiplyAddNegated(gv, s, gv), Vector256.Create(1f));
        return (Avx.Multiply(Avx.Multiply(t, uv), factor), Avx.Multiply(t, gv));
    }

    /// <summary>The portable path (and the tail of the AVX2 one), in L1-sized blocks through TensorPrimitives.</summary>
    private static void ForwardTail(float* gate, float* up, float* output, int length)
    {
        Span<float> sig = stackalloc float[Block];
        for (int i = 0; i < length; i += Block)
        {
            int len = Math.Min(Block, length - i);
            var g = new ReadOnlySpan<float>(gate + i, len);
            var s = sig[..len];
            TensorPrimitives.Sigmoid(g, s);
            TensorPrimitives.Multiply(g, s, s);
            TensorPrimitives.Multiply(s, new ReadOnlySpan<float>(up + i, len), new Span<float>(output + i, len));
        }
    }

    private static void BackwardTail(float* dOutput, float* gate, float* up, float* dGate, float* dUp, int length)
    {
        Span<float> sig = stackalloc float[Block];
        Span<float> tmp = stackalloc float[Block];
        for (int i = 0; i < length; i += Block)
        {
            int len = Math.Min(Block, length - i);
            var dy = new ReadOnlySpan<float>(dOutput + i, len);
            var g = new ReadOnlySpan<float>(gate + i, len);
            var s = sig[..len];
            var t = tmp[..len];
            TensorPrimitives.Sigmoid(g, s);
            TensorPrimitives.Multiply(dy, s, t);                 // t = dy * s
            TensorPrimitives.MultiplyAdd(g, s, -1f, s);          // s <- g*s - 1
            TensorPrimitives.Subtract(g, s, s);                  // s <- g - g*s + 1
            TensorPrimitives.Multiply(t, g, new Span<float>(dUp + i, len));
            TensorPrimitives.Multiply(t, new ReadOnlySpan<float>(up + i, len), t);
            TensorPrimitives.Multiply(t, s, new Span<float>(dGate + i, len));
        }
    }
}
