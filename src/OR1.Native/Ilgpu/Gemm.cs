using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Tiled SGEMM, C = alpha op(A) op(B) + beta C with strided batches: the classic shared-memory kernel.
/// A group of side x side threads owns a (4 side) x (4 side) tile of C; each thread accumulates a 4 x 4
/// register micro-tile (rows ty + r side, columns tx + c side, so a warp's stores are contiguous).
/// K is walked in chunks: the group stages op(A)[tile rows, chunk] and op(B)[chunk, tile columns] in
/// shared memory (loads coalesced along whichever axis is contiguous for the transpose case), barriers,
/// multiplies, barriers. Every element of C sums its K products in the same order: deterministic.
/// CUDA uses 16 x 16 threads (64 x 64 tiles, K chunks of 16); the CPU simulator 2 x 2 (8 x 8 tiles).
/// </summary>
internal static class IlgpuGemm
{
    /// <summary>Largest K chunk and tile edge the shared tiles are sized for.</summary>
    public const int MaxKTile = 16, MaxTile = 64;

    /// <summary>Shapes, leading dimensions, batch strides and scalars of one call.</summary>
    public struct GemmArgs
    {
        public int M, N, K, Lda, Ldb, Ldc, TransA, TransB, KTile;
        public long StrideA, StrideB, StrideC;
        public float Alpha, Beta;
    }

    [IlgpuKernel]
    public static void GemmKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmArgs args)
    {
        var tileA = SharedMemory.Allocate<float>(MaxKTile * MaxTile);
        var tileB = SharedMemory.Allocate<float>(MaxKTile * MaxTile);
        int side = Group.DimX, tx = Group.IdxX, ty = Group.IdxY;
        int threads = side * side, tid = ty * side + tx;
        int tileRows = 4 * side, tileCols = 4 * side, kTile = args.KTile;
        int rowTiles = (args.M + tileRows - 1) / tileRows, colTiles = (args.N + tileCols - 1) / tileCols;
        long tilesPerBatch = (long)rowTiles * colTiles;
        int batch = Grid.IdxZ;
        long aBase = batch * args.StrideA, bBase = batch * args.StrideB, cBase = batch * args.StrideC;
        // Grid-stride over the tiles of this batch entry (x enumerates them; the CPU simulator launches few groups).
        for (long t = Grid.IdxX; t < tilesPerBatch; t += Grid.DimX)
        {
            int row0 = (int)(t / colTiles) * tileRows, col0 = (int)(t % colTiles) * tileCols;
            float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
            float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
            float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
            float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
            for (int k0 = 0; k0 < args.K; k0 += kTile)
            {
                // Stage op(A)[row0.., k0..] as tileA[kk * tileRows + i] and op(B)[k0.., col0..] as tileB[kk * tileCols + j].
                for (int e = tid; e < tileRows * kTile; e += threads)
                {
                    int i, kk;
                    if (args.TransA == 0) { i = e / kTile; kk = e - i * kTile; }
                    else { kk = e / tileRows; i = e - kk * tileRows; }
                    int m = row0 + i, k = k0 + kk;
                    float v = 0f;
                    if (m < args.M && k < args.K)
                        v = args.TransA == 0 ? a[aBase + (long)m * args.Lda + k] : a[aBase + (long)k * args.Lda + m];
                    tileA[kk * tileRows + i] = v;
                }
                for (int e = tid; e < tileCols * kTile; e += threads)
                {
                    int j, kk;
                    if (args.TransB == 0) { kk = e / tileCols; j = e - kk * tileCols; }
                    else { j = e / kTile; kk = e - j * kTile; }
                    int n = col0 + j, k = k0 + kk;
                    float v = 0f;
                    if (n < args.N && k < args.K)
                        v = args.TransB == 0 ? b[bBase + (long)k * args.Ldb + n] : b[bBase + (long)n * args.Ldb + k];
                    tileB[kk * tileCols + j] = v;
                }
                Group.Barrier();
                int kEnd = Math.Min(kTile, args.K - k0);
                for (int kk = 0; kk < kEnd; kk++)
                {
                    int ra = kk * tileRows + ty, rb = kk * tileCols + tx;
                    float a0 = tileA[ra], a1 = tileA[ra + side], a2 = tileA[ra + 2 * side], a3 = tileA[ra + 3 * side];
                    float b0 = tileB[rb], b1 = tileB[rb + side], b2 = tileB[rb + 2 * side], b3 = tileB[rb + 3 * side];
                    c00 += a0 * b0;
                    c01 += a0 * b1;
                    c02 += a0 * b2;
                    c03 += a0 * b3;
                    c10 += a1 * b0;
                    c11 += a1 * b1;
                    c12 += a1 * b2;
                    c13 += a1 * b3;
                    c20 += a2 * b0;
                    c21 += a2 * b1;
                    c22 += a2 * b2;
                    c23 += a2 * b3;
                    c30 += a3 * b0;
                    c31 += a3 * b1;
                    c32 += a3 * b2;
                    c33 += a3 * b3;
                }
                Group.Barrier();
            }
            Store(c, cBase, args, row0 + ty + 0 * side, col0 + tx + 0 * side, c00);
            Store(c, cBase, args, row0 + ty + 0 * side, col0 + tx + 1 * side, c01);
            Store(c, cBase, args, row0 + ty + 0 * side, col0 + tx + 2 * side, c02);
            Store(c, cBase, args, row0 + ty + 0 * side, col0 + tx + 3 * side, c03);
            Store(c, cBase, args, row0 + ty + 1 * side, col0 + tx + 0 * side, c10);
            Store(c, cBase, args, row0 + ty + 1 * side, col0 + tx + 1 * side, c11);
            Store(c, cBase, args, row0 + ty + 1 * side, col0 + tx + 2 * side, c12);
            Store(c, cBase, args, row0 + ty + 1 * side, col0 + tx + 3 * side, c13);
            Store(c, cBase, args, row0 + ty + 2 * side, col0 + tx + 0 * side, c20);
            Store(c, cBase, args, row0 + ty + 2 * side, col0 + tx + 1 * side, c21);
            Store(c, cBase, args, row0 + ty + 2 * side, col0 + tx + 2 * side, c22);
            Store(c, cBase, args, row0 + ty + 2 * side, col0 + tx + 3 * side, c23);
            Store(c, cBase, args, row0 + ty + 3 * side, col0 + tx + 0 * side, c30);
            Store(c, cBase, args, row0 + ty + 3 * side, col0 + tx + 1 * side, c31);
            Store(c, cBase, args, row0 + ty + 3 * side, col0 + tx + 2 * side, c32);
            Store(c, cBase, args, row0 + ty + 3 * side, col0 + tx + 3 * side, c33);
        }
    }

    private static void Store(ArrayView<float> c, long cBase, GemmArgs args, int m, int n, float sum)
    {
        if (m >= args.M || n >= args.N) return;
        long at = cBase + (long)m * args.Ldc + n;
        c[at] = args.Beta == 0f ? args.Alpha * sum : args.Alpha * sum + args.Beta * c[at];
    }

    /// <summary>
    /// Launches C[b] = alpha op(A[b]) op(B[b]) + beta C[b] for b &lt; batch. Leading dimensions are the row
    /// lengths of the stored (untransposed) matrices; strides are per batch entry, in elements.
    /// </summary>
    public static void Multiply(IlgpuDevice device, ArrayView<float> a, bool transposeA, ArrayView<float> b, bool transposeB,
        ArrayView<float> c, int batch, int m, int n, int k, int lda, int ldb, int ldc, long strideA, long strideB, long strideC,
        float alpha, float beta)
    {
        if (batch == 0 || m == 0 || n == 0) return;
        var p = device.Profile;
        int side = p.GemmThreadsPerSide, tile = 4 * side;
        long tiles = (long)((m + tile - 1) / tile) * ((n + tile - 1) / tile);
        int groupsX = (int)Math.Min(tiles, Math.Max(1, p.MaxGroups / Math.Max(1, batch)) + 0L);
        if (device.Accelerator.AcceleratorType == ILGPU.Runtime.AcceleratorType.Cuda) groupsX = (int)Math.Min(tiles, 65535);
        var args = new GemmArgs
        {
            M = m, N = n, K = k, Lda = lda, Ldb = ldb, Ldc = ldc, TransA = transposeA ? 1 : 0, TransB = transposeB ? 1 : 0,
            KTile = p.GemmKTile, StrideA = strideA, StrideB = strideB, StrideC = strideC, Alpha = alpha, Beta = beta,
        };
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(GemmKernel)(
            new KernelConfig(new Index3D(Math.Max(1, groupsX), 1, batch), new Index3D(side, side, 1)), a, b, c, args);
    }
}
