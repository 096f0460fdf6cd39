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

    /// <summary>
    /// e^x for x at most 0 (a probability relative to the largest: sampling's exp(z - max z)), to about one ulp:
    /// x = n ln 2 + r with n = round(x log2 e) and r reduced in two steps (ln 2 split into a 9-bit head, whose
    /// product with n is exact, and the rest), |r| &lt;= ln 2 / 2; e^r from its Taylor series to r^7 (truncation below
    /// 6e-9 relative), by Horner with FMA; then scaled by 2^n. x is clamped at -87.3, where e^x is about 1.2e-38, so
    /// -inf gives that instead of 0 (sampling's weights round it to 0 either way) and 2^n stays normal. Unlike
    /// <see cref="Exp2"/> with a scaled argument, the reduction does not multiply the rounding error of x log2 e into
    /// the result. The 16-lane overload returns the same bits lane for lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ExpNonPositive(Vector256<float> x)
    {
        x = Avx.Max(x, Vector256.Create(-87.3f));
        var n = Avx.RoundToNearestInteger(Avx.Multiply(x, Vector256.Create(1.44269504f)));
        var p = ExpReduced(Fma.MultiplyAddNegated(n, Vector256.Create(-2.12194440e-4f), Fma.MultiplyAddNegated(n, Vector256.Create(0.693359375f), x)));
        var scale = Avx2.ShiftLeftLogical(Avx2.Add(Avx.ConvertToVector256Int32(n), Vector256.Create(127)), 23).AsSingle();
        return Avx.Multiply(p, scale);
    }

    /// <inheritdoc cref="ExpNonPositive(Vector256{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ExpNonPositive(Vector512<float> x)
    {
        x = Avx512F.Max(x, Vector512.Create(-87.3f));
        var n = Avx512F.RoundScale(Avx512F.Multiply(x, Vector512.Create(1.44269504f)), 0);
        var r = Avx512F.FusedMultiplyAddNegated(n, Vector512.Create(0.693359375f), x);
        r = Avx512F.FusedMultiplyAddNegated(n, Vector512.Create(-2.12194440e-4f), r);
        var p = Avx512F.FusedMultiplyAdd(Vector512.Create(1f / 5040), r, Vector512.Create(1f / 720));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f / 120));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f / 24));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f / 6));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(0.5f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f));
        return Avx512F.Scale(p, n);
    }

    /// <summary>e^r for |r| &lt;= ln 2 / 2: Taylor to r^7 by Horner.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ExpReduced(Vector256<float> r)
    {
        var p = Fma.MultiplyAdd(Vector256.Create(1f / 5040), r, Vector256.Create(1f / 720));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(1f / 120));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(1f / 24));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(1f / 6));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(0.5f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(1f));
        return Fma.MultiplyAdd(p, r, Vector256.Create(1f));
    }

    /// <summary>sigmoid(x) = 1 / (1 + 2^(-x log2 e)), with the exponent clamped so that large negative x gives 0, not NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sigmoid(Vector256<float> x)
    {
        var e = Exp2(Avx.Min(Avx.Multiply(x, Vector256.Create(-1.44269504f)), Vector256.Create(126f)));
        return Avx.Divide(Vector256.Create(1f), Avx.Add(Vector256.Create(1f), e));
    }

    /// <summary>
    /// Writes the transpose of the 8x8 block held in rows r0..r7 as 8 rows of 8 floats at d, d + width, ...
    /// (the packing step of GEMM and of attention's K^T/V^T). Unpack pairs rows, shuffle gathers quads,
    /// and the 128-bit permute joins the two halves.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void StoreTransposed8x8(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3,
        Vector256<float> r4, Vector256<float> r5, Vector256<float> r6, Vector256<float> r7, float* d, nint width)
    {
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); // rows 0-3: columns 0 | 4
        var u1 = Avx.Shuffle(t0, t2, 0xEE); // 1 | 5
        var u2 = Avx.Shuffle(t1, t3, 0x44); // 2 | 6
        var u3 = Avx.Shuffle(t1, t3, 0xEE); // 3 | 7
        var v0 = Avx.Shuffle(t4, t6, 0x44); // rows 4-7
        var v1 = Avx.Shuffle(t4, t6, 0xEE);
        var v2 = Avx.Shuffle(t5, t7, 0x44);
        var v3 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(d, Avx.Permute2x128(u0, v0, 0x20));
        Avx.Store(d + width, Avx.Permute2x128(u1, v1, 0x20));
        Avx.Store(d + 2 * width, Avx.Permute2x128(u2, v2, 0x20));
        Avx.Store(d + 3 * width, Avx.Permute2x128(u3, v3, 0x20));
        Avx.Store(d + 4 * width, Avx.Permute2x128(u0, v0, 0x31));
        Avx.Store(d + 5 * width, Avx.Permute2x128(u1, v1, 0x31));
        Avx.Store(d + 6 * width, Avx.Permute2x128(u2, v2, 0x31));
        Avx.Store(d + 7 * width, Avx.Permute2x128(u3, v3, 0x31));
    }
}
