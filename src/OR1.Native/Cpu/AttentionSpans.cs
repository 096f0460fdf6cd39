using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuAttention
{
    /// <summary>
    /// Key positions per softmax span. The forward and the decode compute a query row the same way, so the rollout
    /// engine's decode gives the trainer's forward bit for bit: keys in blocks of <see cref="KeyBlock"/> positions counted
    /// from the sequence's first, an online softmax over the blocks of each span of this many positions (from -inf, 0, 0),
    /// and the spans' partials merged in span order (<see cref="MergeSpan"/>). The span is the decode's unit of splitting
    /// a row across threads (flash-decoding): a fixed split size, not a fixed split count, so where a row is cut does not
    /// change its bits (the batch-invariant scheme).
    /// </summary>
    private const int SoftmaxSpan = 256;

    /// <summary>
    /// Merges one span's partial (max m, sum l, unnormalised output o, all base 2) into the running result (M, L, O) over
    /// the first d columns: with M' = max(M, m), L = L 2^(M - M') + l 2^(m - M'), O likewise. From (-inf, 0, 0) it is an
    /// exact copy of the partial (2^-inf is 0 and 2^0 is 1 exactly); a span the row sees nothing of (m = -inf, l = 0, o = 0)
    /// leaves the result as it is.
    /// </summary>
    private static void MergeSpan(ref float mTotal, ref float lTotal, float* oTotal, float m, float l, float* o, int d)
    {
        float merged = MathF.Max(mTotal, m);
        float wTotal = Exp2One(mTotal - merged), w = Exp2One(m - merged);
        lTotal = lTotal * wTotal + l * w;
        mTotal = merged;
        int i = 0;
        if (Simd)
        {
            var a = Vector256.Create(wTotal);
            var b = Vector256.Create(w);
            for (; i + 8 <= d; i += 8)
                Avx.Store(oTotal + i, Avx.Add(Avx.Multiply(Avx.LoadVector256(oTotal + i), a), Avx.Multiply(Avx.LoadVector256(o + i), b)));
        }
        for (; i < d; i++) oTotal[i] = oTotal[i] * wTotal + o[i] * w;
    }

    /// <summary>2^x of one value, bit for bit the lanes of <see cref="ExpDifference"/> (0 for -inf and NaN on the SIMD path).</summary>
    private static float Exp2One(float x) => Simd ? FastMath.Exp2(Vector256.Create(x)).ToScalar() : float.Exp2(x);
}
