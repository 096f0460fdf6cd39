using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuAttention
{
    // Row helpers. Score rows are padded to whole vectors, so on the SIMD path n is a multiple of 8 unless a
    // helper says otherwise.

    private static float RowMax(float* x, int n)
    {
        if (Simd)
        {
            var acc = Vector256.Create(float.NegativeInfinity);
            for (int i = 0; i < n; i += 8) acc = Avx.Max(acc, Avx.LoadVector256(x + i));
            var m = Sse.Max(acc.GetLower(), acc.GetUpper());
            m = Sse.Max(m, Sse.Shuffle(m, m, 0b01_00_11_10));
            m = Sse.Max(m, Sse.Shuffle(m, m, 0b10_11_00_01));
            return m.ToScalar();
        }
        float r = float.NegativeInfinity;
        for (int i = 0; i < n; i++) r = MathF.Max(r, x[i]);
        return r;
    }

    /// <summary>x = 2^(x - shift) in place; returns the sum.</summary>
    private static float ExpShiftSum(float* x, int n, float shift)
    {
        if (Simd)
        {
            var sv = Vector256.Create(shift);
            var sum = Vector256<float>.Zero;
            for (int i = 0; i < n; i += 8)
            {
                var e = FastMath.Exp2(Avx.Subtract(Avx.LoadVector256(x + i), sv));
                Avx.Store(x + i, e);
                sum = Avx.Add(sum, e);
            }
            return Vector256.Sum(sum);
        }
        float total = 0f;
        for (int i = 0; i < n; i++) total += x[i] = float.Exp2(x[i] - shift);
        return total;
    }

    /// <summary>x = 2^(x - shift) in place.</summary>
    private static void ExpShift(float* x, int n, float shift)
    {
        if (Simd)
        {
            var sv = Vector256.Create(shift);
            for (int i = 0; i < n; i += 8) Avx.Store(x + i, FastMath.Exp2(Avx.Subtract(Avx.LoadVector256(x + i), sv)));
            return;
        }
        for (int i = 0; i < n; i++) x[i] = float.Exp2(x[i] - shift);
    }

    /// <summary>dP = p (dP - di): the row of dS, written over dP because pass 2 still needs P.</summary>
    private static void SoftmaxGrad(float* p, float* dP, float di, int n)
    {
        if (Simd)
        {
            var dv = Vector256.Create(di);
            for (int i = 0; i < n; i += 8)
                Avx.Store(dP + i, Avx.Multiply(Avx.LoadVector256(p + i), Avx.Subtract(Avx.LoadVector256(dP + i), dv)));
            return;
        }
        for (int i = 0; i < n; i++) dP[i] = p[i] * (dP[i] - di);
    }

    /// <summary>Row r of x (row length ld) *= factor[r]; rows whose factor is 1 are skipped.</summary>
    private static void ScaleRows(float* x, int rows, int ld, float* factor)
    {
        for (int r = 0; r < rows; r++)
        {
            float f = factor[r];
            if (f != 1f) ScaleCopy(x + (long)r * ld, x + (long)r * ld, ld, f);
        }
    }

    /// <summary>dst = scale * src (may alias).</summary>
    private static void ScaleCopy(float* dst, float* src, int n, float scale)
    {
        int i = 0;
        if (Simd)
        {
            var sv = Vector256.Create(scale);
            for (; i + 8 <= n; i += 8) Avx.Store(dst + i, Avx.Multiply(Avx.LoadVector256(src + i), sv));
        }
        for (; i < n; i++) dst[i] = scale * src[i];
    }

    private static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float sum = 0f;
        if (Simd)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8) acc = Fma.MultiplyAdd(Avx.LoadVector256(a + i), Avx.LoadVector256(b + i), acc);
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>result = 2^(from - to), elementwise over n (a multiple of 8 on the SIMD path).</summary>
    private static void ExpDifference(float* from, float* to, float* result, int n)
    {
        if (Simd)
        {
            for (int i = 0; i < n; i += 8)
                Avx.Store(result + i, FastMath.Exp2(Avx.Subtract(Avx.LoadVector256(from + i), Avx.LoadVector256(to + i))));
            return;
        }
        for (int i = 0; i < n; i++) result[i] = float.Exp2(from[i] - to[i]);
    }
}
