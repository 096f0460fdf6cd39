using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuAttention
{
    private sealed partial class Job
    {
        // ------------------------------------------------------------ packing

        private void RunPackForward(int item) => PackTransposedRows(item, K, Kt);

        private void RunPackBackward(int item)
        {
            PackTransposedRows(item, K, Kt);
            PackTransposedRows(item, V, Vt);
        }

        /// <summary>Pack item's rows of K or V (kv head item / PackChunks, chunk item % PackChunks) into
        /// their transposed pack [Hkv, D, Npad]; the last chunk also zeroes the overhang.</summary>
        private void PackTransposedRows(int item, float* rows, float* pack)
        {
            int h = item / PackChunks, chunk = item % PackChunks;
            int n0 = chunk * PackRows, n1 = Math.Min(N, n0 + PackRows), end = chunk == PackChunks - 1 ? Npad : n1;
            PackTransposed(rows + h * D, KvStride, n0, n1, end, D, pack + (long)h * D * Npad, Npad);
        }

        /// <summary>
        /// dst[x * ld + n] = src[n * ldSrc + x] for x &lt; d and n in [n0, n1), and zeros for n in [n1, end):
        /// the overhang of a tile's last vector then reads finite numbers.
        /// </summary>
        private static void PackTransposed(float* src, int ldSrc, int n0, int n1, int end, int d, float* dst, long ld)
        {
            var from = stackalloc float*[8];
            for (int n = n0; n < n1; n += 8)
            {
                int count = Math.Min(8, n1 - n);
                for (int t = 0; t < count; t++) from[t] = src + (long)(n + t) * ldSrc;
                int x = 0;
                if (Simd && count == 8)
                    for (; x + 8 <= d; x += 8) Transpose8x8(from, x, dst + x * ld + n, ld);
                for (; x < d; x++)
                    for (int t = 0; t < count; t++) dst[x * ld + n + t] = from[t][x];
            }
            for (int x = 0; x < d; x++)
                for (int n = n1; n < end; n++) dst[x * ld + n] = 0f;
        }

        /// <summary>Eight source rows at offset x become eight destination rows of eight columns.</summary>
        private static void Transpose8x8(float** from, int x, float* dst, long ld)
        {
            var r0 = Avx.LoadVector256(from[0] + x);
            var r1 = Avx.LoadVector256(from[1] + x);
            var r2 = Avx.LoadVector256(from[2] + x);
            var r3 = Avx.LoadVector256(from[3] + x);
            var r4 = Avx.LoadVector256(from[4] + x);
            var r5 = Avx.LoadVector256(from[5] + x);
            var r6 = Avx.LoadVector256(from[6] + x);
            var r7 = Avx.LoadVector256(from[7] + x);
            FastMath.StoreTransposed8x8(r0, r1, r2, r3, r4, r5, r6, r7, dst, (nint)ld);
        }

        // ------------------------------------------------------------ tiles

        /// <summary>
        /// Copies a tile's queries, pre-scaled so the score GEMM yields base-2 scores, into qs [rows * G, D];
        /// the G heads of a group are adjacent in a row, so each row is one contiguous run. With dos, also
        /// copies the output gradients the same way.
        /// </summary>
        private void LoadQueryTile(int row0, int rows, int h, float* qs, float* dos)
        {
            int run = G * D;
            for (int i = 0; i < rows; i++)
            {
                long at = (long)(row0 + i) * QStride + (long)h * run;
                ScaleCopy(qs + (long)i * run, Q + at, run, Scale2);
                if (dos != null) ScaleCopy(dos + (long)i * run, DO + at, run, 1f);
            }
        }

        /// <summary>
        /// With <see cref="LoadQueryTile"/>, the rest of a backward tile: lse[r] in base 2 and di[r] = dO·O of
        /// each vector. Pass 1 computes Di (its tile is the only writer of those entries); pass 2 reads it back.
        /// </summary>
        private void LoadBackwardTile(int row0, int rows, int h, float* qs, float* dos, float* lse, float* di, bool computeDi)
        {
            LoadQueryTile(row0, rows, h, qs, dos);
            int g = G;
            for (int i = 0; i < rows; i++)
            {
                long row = row0 + i;
                for (int x = 0; x < g; x++)
                {
                    long head = row * Hq + h * g + x;
                    if (computeDi)
                    {
                        long at = row * QStride + (long)(h * g + x) * D;
                        Di[head] = Dot(DO + at, O + at, D);
                    }
                    lse[i * g + x] = Lse[head] * Log2E;
                    di[i * g + x] = Di[head];
                }
            }
        }

        /// <summary>
        /// sc = qs Kt over one block of keys (kt its first), under the causal mask: row r sees keys
        /// j &lt; <see cref="VisibleKeys"/>, and the rest of the row up to the next multiple of 8 is -inf.
        /// </summary>
        private void MaskedScores(int vectors, int keys, float* qs, float* kt, int firstRowKeys, float* sc)
        {
            int cols = RoundUp8(keys);
            CpuGemm.MultiplyStrided(vectors, cols, D, qs, D, 1, kt, Npad, sc, KeyBlock, accumulate: false);
            for (int r = 0; r < vectors; r++)
            {
                float* row = sc + (long)r * KeyBlock;
                for (int j = VisibleKeys(firstRowKeys, r, keys); j < cols; j++) row[j] = float.NegativeInfinity;
            }
        }

        /// <summary>Keys of a block that tile row r (query row r / G) sees, firstRowKeys being those its first row sees.</summary>
        private int VisibleKeys(int firstRowKeys, int r, int keys) => Math.Clamp(firstRowKeys + r / G, 0, keys);

        /// <summary>
        /// The backward's shared inner step for one (query tile, key block) pair: S = qs Kt over the block's
        /// keys (<see cref="MaskedScores"/>), P = 2^(S - lse) in base 2, dP = dos Vt, and dS = P (dP - Di),
        /// written into dps. P stays in sc. Columns from keys up to the next multiple of 8 come out as zeros
        /// in both.
        /// </summary>
        private void SoftmaxBackwardTile(int vectors, int keys, float* qs, float* dos, float* kt, float* vt, float* lse,
            float* di, int firstRowKeys, float* sc, float* dps)
        {
            int d = D, cols = RoundUp8(keys);
            MaskedScores(vectors, keys, qs, kt, firstRowKeys, sc);
            for (int r = 0; r < vectors; r++) ExpShift(sc + (long)r * KeyBlock, cols, lse[r]);
            CpuGemm.MultiplyStrided(vectors, cols, d, dos, d, 1, vt, Npad, dps, KeyBlock, accumulate: false);
            for (int r = 0; r < vectors; r++)
                SoftmaxGrad(sc + (long)r * KeyBlock, dps + (long)r * KeyBlock, di[r], cols);
        }
    }
}
