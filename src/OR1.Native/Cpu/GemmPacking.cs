using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuGemm
{
    /// <summary>
    /// Packs opA[i0 .. i0+mc, p0 .. p0+kc] as MR-row slivers, each stored p-major (MR floats per p) so the
    /// micro-kernel reads one contiguous stream; rows past mc are zero so edge tiles need no masks.
    /// </summary>
    private static void PackA(bool transA, float* a, int lda, int i0, int mc, int p0, int kc, int mr, float* dst)
    {
        if (transA)
        {
            PackCopy(a + (nint)p0 * lda + i0, lda, mc, mr, kc, dst);
            return;
        }
        for (int s = 0; s < mc; s += mr, dst += (nint)mr * kc)
            PackTranspose(a + (nint)(i0 + s) * lda + p0, lda, Math.Min(mr, mc - s), mr, kc, dst);
    }

    /// <summary>
    /// Packs opB[p0 .. p0+kc, j0 .. j0+nc] as NR-column slivers, each stored p-major (NR floats per p,
    /// whole cache lines) so the micro-kernel loads NR/16 vectors per p; columns past nc are zero.
    /// </summary>
    private static void PackB(bool transB, float* b, int ldb, int p0, int kc, int j0, int nc, int nr, float* dst)
    {
        if (!transB)
        {
            PackCopy(b + (nint)p0 * ldb + j0, ldb, nc, nr, kc, dst);
            return;
        }
        for (int t = 0; t < nc; t += nr, dst += (nint)nr * kc)
            PackTranspose(b + (nint)(j0 + t) * ldb + p0, ldb, Math.Min(nr, nc - t), nr, kc, dst);
    }

    /// <summary>
    /// Sliver t gets dst[t*width*kc + p*width + r] = src[p*stride + t*width + r] (zero past count): the
    /// operand already runs along the slivers (A transposed, B not). Walking p outermost reads each source
    /// row once, sequentially, and writes to count/width sliver streams; walking a sliver at a time instead
    /// would touch one 128-byte piece of every row (a new page each) and measured 2.4x slower.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackCopy(float* src, nint stride, int count, int width, int kc, float* dst)
    {
        int full = count / width, rest = count - full * width;
        nint sliver = (nint)width * kc;
        bool vector = (width & 3) == 0;
        int wide = Vector256.IsHardwareAccelerated ? width & ~7 : 0;
        for (int p = 0; p < kc; p++, src += stride)
        {
            float* s = src;
            float* d = dst + (nint)p * width;
            for (int t = 0; t < full; t++, s += width, d += sliver)
            {
                if (vector)
                {
                    int r = 0;
                    for (; r < wide; r += 8) Vector256.Store(Vector256.Load(s + r), d + r);
                    for (; r < width; r += 4) Vector128.Store(Vector128.Load(s + r), d + r);
                }
                else
                {
                    for (int r = 0; r < width; r++) d[r] = s[r];
                }
            }
            if (rest > 0)
            {
                int r = 0;
                for (; r < rest; r++) d[r] = s[r];
                for (; r < width; r++) d[r] = 0f;
            }
        }
    }

    /// <summary>dst[p*width + r] = src[r*stride + p] for r &lt; count, 0 beyond: the operand runs across the
    /// sliver (A plain, B transposed), so blocks of 8 (or 4) rows x 8 p are transposed in registers, each
    /// source row is read sequentially, and the sliver is written in whole 32-byte rows. B^T packs as
    /// fast as plain B this way; the scalar gather it replaced was ~1.6x slower.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackTranspose(float* src, nint stride, int count, int width, int kc, float* dst)
    {
        int r = 0;
        if (Avx.IsSupported)
        {
            int kc8 = kc & ~7;
            if ((width & 7) == 0)
            {
                for (; r + 8 <= count; r += 8)
                {
                    float* s0 = src + r * stride;
                    float* d = dst + r;
                    int p = 0;
                    for (; p < kc8; p += 8, d += 8 * (nint)width) Transpose8x8(s0 + p, stride, d, width);
                    for (; p < kc; p++, d += width)
                    {
                        float* sp = s0 + p;
                        for (int i = 0; i < 8; i++) d[i] = sp[i * stride];
                    }
                }
            }
            for (; r + 4 <= count; r += 4)
            {
                float* s0 = src + r * stride, s1 = s0 + stride, s2 = s1 + stride, s3 = s2 + stride;
                float* d = dst + r;
                int p = 0;
                for (; p < kc8; p += 8, d += 8 * (nint)width)
                    Transpose4x8(Vector256.Load(s0 + p), Vector256.Load(s1 + p), Vector256.Load(s2 + p), Vector256.Load(s3 + p), d, width);
                for (; p < kc; p++, d += width)
                {
                    d[0] = s0[p]; d[1] = s1[p]; d[2] = s2[p]; d[3] = s3[p];
                }
            }
        }
        for (; r < count; r++)
        {
            float* s0 = src + r * stride;
            for (int p = 0; p < kc; p++) dst[(nint)p * width + r] = s0[p];
        }
        for (; r < width; r++)
        {
            for (int p = 0; p < kc; p++) dst[(nint)p * width + r] = 0f;
        }
    }

    /// <summary>Eight rows of 8 consecutive p (row i at s + i*stride) become 8 rows of 8 floats at d, d + width, ...</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* s, nint stride, float* d, nint width)
    {
        var r0 = Vector256.Load(s);
        var r1 = Vector256.Load(s + stride);
        var r2 = Vector256.Load(s + 2 * stride);
        var r3 = Vector256.Load(s + 3 * stride);
        var r4 = Vector256.Load(s + 4 * stride);
        var r5 = Vector256.Load(s + 5 * stride);
        var r6 = Vector256.Load(s + 6 * stride);
        var r7 = Vector256.Load(s + 7 * stride);
        FastMath.StoreTransposed8x8(r0, r1, r2, r3, r4, r5, r6, r7, d, width);
    }

    /// <summary>Rows r0..r3 (8 consecutive p each) become 8 groups of 4 floats at d, d + width, ...</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x8(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3, float* d, nint width)
    {
        var t0 = Avx.UnpackLow(r0, r1);   // r0p0 r1p0 r0p1 r1p1 | r0p4 r1p4 r0p5 r1p5
        var t1 = Avx.UnpackHigh(r0, r1);  // r0p2 r1p2 r0p3 r1p3 | r0p6 r1p6 r0p7 r1p7
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var u0 = Avx.Shuffle(t0, t2, 0x44); // p0 | p4
        var u1 = Avx.Shuffle(t0, t2, 0xEE); // p1 | p5
        var u2 = Avx.Shuffle(t1, t3, 0x44); // p2 | p6
        var u3 = Avx.Shuffle(t1, t3, 0xEE); // p3 | p7
        Vector128.Store(u0.GetLower(), d);
        Vector128.Store(u1.GetLower(), d + width);
        Vector128.Store(u2.GetLower(), d + 2 * width);
        Vector128.Store(u3.GetLower(), d + 3 * width);
        Vector128.Store(u0.GetUpper(), d + 4 * width);
        Vector128.Store(u1.GetUpper(), d + 5 * width);
        Vector128.Store(u2.GetUpper(), d + 6 * width);
        Vector128.Store(u3.GetUpper(), d + 7 * width);
    }
}
