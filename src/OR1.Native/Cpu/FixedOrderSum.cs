using System.Runtime.Intrinsics;

namespace OR1.Native.Cpu;

/// <summary>
/// Sums whose order depends only on the length: lanes from x[0] (16 with AVX-512, else 8), the lanes reduced in a fixed
/// tree, then the tail in order. A library reduction that first aligns to the address would sum a row differently in
/// another buffer or at another place in a batch; these give a row the same bits wherever it lies, which the rollout
/// engine's log-probs need to equal the trainer's (RMSNorm's mean square, the log-prob fold's sums).
/// </summary>
internal static unsafe class FixedOrderSum
{
    /// <summary>Σ x.</summary>
    public static float Sum(float* x, int n)
    {
        int i = 0;
        float total = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16) acc += Vector512.Load(x + i);
            total = Vector512.Sum(acc);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8) acc += Vector256.Load(x + i);
            total = Vector256.Sum(acc);
        }
        for (; i < n; i++) total += x[i];
        return total;
    }

    /// <summary>Σ a b, fused multiply-adds per lane.</summary>
    public static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float total = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc);
            total = Vector512.Sum(acc);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
            total = Vector256.Sum(acc);
        }
        for (; i < n; i++) total = MathF.FusedMultiplyAdd(a[i], b[i], total);
        return total;
    }

    /// <summary>Σ x².</summary>
    public static float SumOfSquares(float* x, int n) => Dot(x, x, n);
}
