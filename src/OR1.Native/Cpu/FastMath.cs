using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

/// <summary>
/// Vectorised transcendental functions for kernels whose cost is the exponential (softmax, SiLU).
/// Callers check <see cref="IsSupported"/> and keep a scalar or TensorPrimitives path otherwise.
/// </summary>
internal static class FastMath
{
    /// <summary>AVX2 + FMA, which the kernels below need.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// 2^x for x at most 126: x = n + f with |f| ≤ 1/2, 2^f from a degree-6 minimax polynomial (relative
    /// error 2e-9 before fp32 rounding), and n added to the exponent bits. Below -126 the result is flushed
    /// to 0: that keeps 2^n normal and turns the -inf of masked attention scores (whose f is NaN) into
    /// exact zeros. Callers clamp larger arguments.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2(Vector256<float> x)
    {
        var keep = Avx.CompareGreaterThanOrEqual(x, Vector256.Create(-126f));
        var n = Avx.RoundToNearestInteger(x);
        var f = Avx.Subtract(x, n);
        var p = Fma.MultiplyAdd(Vector256.Create(1.534581243e-4f), f, Vector256.Create(1.339993090e-3f));
        p = Fma.MultiplyAdd(p, f, Vector256.Create(9.618489072e-3f));
        p = Fma.MultiplyAdd(p, f, Vector256.Create(5.550328642e-2f));
        p = Fma.MultiplyAdd(p, f, Vector256.Create(2.402264625e-1f));
        p = Fma.MultiplyAdd(p, f, Vector256.Create(6.931471825e-1f));
        p = Fma.MultiplyAdd(p, f, Vector256.Create(1f));
        var bits = Avx2.Add(p.AsInt32(), Avx2.ShiftLeftLogical(Avx.ConvertToVector256Int32WithTruncation(n), 23));
        return Avx.And(bits.AsSingle(), keep);
    }

    /// <summary>sigmoid(x) = 1 / (1 + 2^(-x log2 e)), with the exponent clamped so that large negative x gives 0, not NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sigmoid(Vector256<float> x)
    {
        var e = Exp2(Avx.Min(Avx.Multiply(x, Vector256.Create(-1.44269504f)), Vector256.Create(126f)));
        return Avx.Divide(Vector256.Create(1f), Avx.Add(Vector256.Create(1f), e));
    }
}
