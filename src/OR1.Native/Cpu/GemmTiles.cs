using System.Runtime.CompilerServices;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuGemm
{
    /// <summary>
    /// Where an operand's slivers lie: sliver i (rows [i*MR, i*MR + MR) of A, or columns [i*NR, i*NR + NR)
    /// of B) starts at Origin + i * Next, its consecutive k steps are Step floats apart and, for an A read
    /// row by row, its rows Row floats apart. A packed block is (pack, MR*kc, MR); A read in place is
    /// (a, MR, lda) transposed or (a, MR*lda, 1, lda) row-major; B read in place is (b, NR, ldb).
    /// </summary>
    private readonly struct Slivers(float* origin, nint next, nint step, nint row = 0)
    {
        public float* Origin { get; } = origin;
        public nint Next { get; } = next;
        public nint Step { get; } = step;
        public nint Row { get; } = row;
        public bool RowMajor => Row != 0;
    }

    /// <summary>
    /// C[0 .. m, 0 .. n] = alpha * A B + beta * C over kc steps, one MR x NR register tile at a time: the
    /// loop the packed blocks and <see cref="MultiplyStrided"/> share. Packed slivers hold zeros past m and
    /// n, so the fixed-tile kernels compute edge tiles whole into scratch; operands read in place
    /// (inPlace, AVX-512 only) must not be read past their ends, so the kernel masks a ragged last B
    /// vector, and with accumulateInOrder (alpha and beta 1) its accumulators start from C.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MultiplyTiles(Blocking blocking, int m, int n, int kc, Slivers a, Slivers b,
        float* c, nint ldc, float alpha, float beta, bool inPlace, bool accumulateInOrder, Workspace? ws)
    {
        int mr = blocking.MR, nr = blocking.NR;
        var kind = blocking.Kind;
        for (int jr = 0, t = 0; jr < n; jr += nr, t++)
        {
            int cols = Math.Min(nr, n - jr);
            float* bs = b.Origin + t * b.Next;
            for (int ir = 0, i = 0; ir < m; ir += mr, i++)
            {
                int rows = Math.Min(mr, m - ir);
                float* asl = a.Origin + i * a.Next;
                float* ct = c + ir * ldc + jr;
                if (kind == Kernel.Avx512)
                {
                    KernelAvx512(rows, cols, kc, asl, a.Row, a.Step, bs, b.Step, ct, ldc, alpha, beta,
                        rowMajorA: a.RowMajor, maskLastB: inPlace, startFromC: accumulateInOrder);
                }
                else if (rows == mr && cols == nr)
                {
                    RunFixedTileKernel(kind, kc, asl, bs, ct, ldc, alpha, beta);
                }
                else
                {
                    // Edge tile: the packed slivers are zero-padded, so compute a full tile into scratch and
                    // merge only the valid part.
                    ws ??= Workspace.For(blocking);
                    RunFixedTileKernel(kind, kc, asl, bs, ws.Tile, nr, 1f, 0f);
                    MergeTile(ws.Tile, nr, rows, cols, ct, ldc, alpha, beta);
                }
            }
        }
    }

    /// <summary>C tile = alpha * acc (beta 0), alpha * acc + C (beta 1) or alpha * acc + beta * C, fused.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MergeTile(float* tile, int nr, int rows, int cols, float* c, nint ldc, float alpha, float beta)
    {
        for (int r = 0; r < rows; r++)
        {
            float* t = tile + (nint)r * nr;
            float* d = c + r * ldc;
            if (beta == 0f)
            {
                for (int j = 0; j < cols; j++) d[j] = alpha * t[j];
            }
            else if (beta == 1f)
            {
                for (int j = 0; j < cols; j++) d[j] = MathF.FusedMultiplyAdd(alpha, t[j], d[j]);
            }
            else
            {
                for (int j = 0; j < cols; j++) d[j] = MathF.FusedMultiplyAdd(alpha, t[j], beta * d[j]);
            }
        }
    }
}
