namespace OR1.Native.Cpu;

internal static unsafe partial class CpuGemm
{
    /// <summary>
    /// C[i, j] = sum_p A(i, p) * b[p*ldb + j] (+ C[i, j] when accumulate), i &lt; m, j &lt; n, p &lt; k, with
    /// A(i, p) = a[i*aRowStride + p*aStepStride], one of the two strides 1: the small products of a caller
    /// that is threaded itself (attention tiles), on the calling thread. With AVX-512 the micro-kernel
    /// reads the operands where they are, nothing past row m - 1 and column k - 1 of A nor past column
    /// n - 1 of B, and each element of C adds its k terms in order onto its old value (accumulate) or onto
    /// 0, so a sum split over several calls rounds as one call would. The fixed-tile kernels pack, as
    /// <see cref="Multiply"/> does.
    /// </summary>
    internal static void MultiplyStrided(int m, int n, int k, float* a, nint aRowStride, nint aStepStride,
        float* b, nint ldb, float* c, nint ldc, bool accumulate)
    {
        if (aRowStride != 1 && aStepStride != 1)
            throw new ArgumentException("A must have unit stride along its rows or along k.", nameof(aStepStride));
        if (m <= 0 || n <= 0) return;
        float beta = accumulate ? 1f : 0f;
        if (k <= 0)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }
        var blocking = s_blocking;
        bool stepMajor = aRowStride == 1;
        if (blocking.Kind != Kernel.Avx512)
        {
            new BlockedProduct(blocking, transA: stepMajor, transB: false, m, n, k, 1f, a, (int)(stepMajor ? aStepStride : aRowStride),
                b, (int)ldb, beta, c, (int)ldc).RunSerial();
            return;
        }
        int mr = blocking.MR, nr = blocking.NR;
        var aSlivers = stepMajor ? new Slivers(a, mr, aStepStride) : new Slivers(a, mr * aRowStride, 1, aRowStride);
        MultiplyTiles(blocking, m, n, k, aSlivers, new Slivers(b, nr, ldb), c, ldc, 1f, beta,
            inPlace: true, accumulateInOrder: accumulate, ws: null);
    }
}
