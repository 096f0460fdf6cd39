namespace OR1.Native.Cpu;

internal static unsafe partial class CpuAttention
{
    /// <summary>
    /// Gradients of <see cref="Forward"/> (dq, dk, dv overwrite) from dOutput and the forward's output and logSumExp.
    /// </summary>
    public static void Backward(float* dOutput, float* q, float* k, float* v, float* output, float* logSumExp,
        int[] offsets, int numHeads, int numKvHeads, int headDim, float scale, float* dq, float* dk, float* dv)
    {
        if (offsets[^1] == 0) return;
        var job = SequenceJob(offsets, numHeads, numKvHeads, headDim, scale, q, k, v, output, logSumExp);
        job.DO = dOutput; job.DQ = dq; job.DK = dk; job.DV = dv;
        try
        {
            long kv = job.KvPackFloats;
            float* pack = (t_pack ??= new Scratch()).Rent(2 * kv + (long)job.N * numHeads);
            job.Kt = pack;
            job.Vt = pack + kv;
            job.Di = pack + 2 * kv;
            long work = job.CausalWork();
            RunItems(job.PackCount, job.PackBackward, work);
            job.PlanQueryTiles();
            RunItems(job.ItemCount, job.DqTile, work);
            job.PlanKeyBlocks();
            RunItems(job.ItemCount, job.DkvBlock, work);
        }
        finally { job.Release(); }
    }

    private sealed partial class Job
    {
        /// <summary>Pass 1, dQ over one query tile; it also computes the tile's Di for pass 2.</summary>
        private void RunDqTile(int item)
        {
            var tile = BlockAt(item, TileRows);
            int s = tile.Start, h = tile.Head, r0 = tile.First, rows = tile.Count;
            int g = G, d = D, dp = Dp, vectors = rows * g;

            long accSize = (long)vectors * dp;
            var scratch = new BackwardScratch(vectors, d, accSize);
            float* qs = scratch.Qs, dos = scratch.Dos, sc = scratch.Sc, dps = scratch.Dps, lse = scratch.Lse, di = scratch.Di;
            float* acc = scratch.Accumulators;

            LoadBackwardTile(s + r0, rows, h, qs, dos, lse, di, computeDi: true);
            new Span<float>(acc, checked((int)accSize)).Clear();

            float* kt = Kt + (long)h * d * Npad + s;
            float* vt = Vt + (long)h * d * Npad + s;
            float* kRows = K + (long)s * KvStride + h * d;
            int keyEnd = r0 + rows;
            for (int j0 = 0; j0 < keyEnd; j0 += KeyBlock)
            {
                int bc = Math.Min(KeyBlock, keyEnd - j0);
                SoftmaxBackwardTile(vectors, bc, qs, dos, kt + j0, vt + j0, lse, di, r0 + 1 - j0, sc, dps);
                CpuGemm.MultiplyStrided(vectors, d, bc, dps, KeyBlock, 1, kRows + (long)j0 * KvStride, KvStride, acc, dp, accumulate: true);
            }

            for (int r = 0; r < vectors; r++)
            {
                long row = s + r0 + r / g;
                ScaleCopy(DQ + row * QStride + (h * g + r % g) * d, acc + (long)r * dp, d, Scale);
            }
        }

        /// <summary>Pass 2, dK and dV over one key block, from the query tiles at or below it.</summary>
        private void RunDkvBlock(int item)
        {
            var block = BlockAt(item, KeyRows);
            int s = block.Start, len = block.Length, h = block.Head, j0 = block.First, bk = block.Count;
            int g = G, d = D, tileRows = TileRows, maxVectors = tileRows * g;

            long accSize = (long)d * KeyBlock;
            var scratch = new BackwardScratch(maxVectors, d, 2 * accSize);
            float* qs = scratch.Qs, dos = scratch.Dos, sc = scratch.Sc, dps = scratch.Dps, lse = scratch.Lse, di = scratch.Di;
            float* dkt = scratch.Accumulators, dvt = dkt + accSize;
            new Span<float>(dkt, checked((int)(2 * accSize))).Clear();

            float* kt = Kt + (long)h * d * Npad + s + j0;
            float* vt = Vt + (long)h * d * Npad + s + j0;
            // Rows before the block's first key see none of it.
            for (int i0 = j0; i0 < len; i0 += tileRows)
            {
                int i1 = Math.Min(len, i0 + tileRows), vectors = (i1 - i0) * g;
                // Near the diagonal only the block's first keys are visible to this tile; skip the rest.
                int keys = Math.Min(bk, i1 - j0), cols = RoundUp8(keys);
                LoadBackwardTile(s + i0, i1 - i0, h, qs, dos, lse, di, computeDi: false);
                SoftmaxBackwardTile(vectors, keys, qs, dos, kt, vt, lse, di, i0 + 1 - j0, sc, dps);
                // Transposed accumulators: dVᵀ[x, j] += Σ_r dO[r, x] P[r, j], so the GEMM streams P and dS rows
                // and reads the tile's dO and q as broadcasts. q carries scale · log2 e; ln 2 comes back below.
                CpuGemm.MultiplyStrided(d, cols, vectors, dos, 1, d, sc, KeyBlock, dvt, KeyBlock, accumulate: true);
                CpuGemm.MultiplyStrided(d, cols, vectors, qs, 1, d, dps, KeyBlock, dkt, KeyBlock, accumulate: true);
            }

            for (int j = 0; j < bk; j++)
            {
                long at = (long)(s + j0 + j) * KvStride + h * d;
                for (int x = 0; x < d; x++)
                {
                    DK[at + x] = Ln2 * dkt[x * KeyBlock + j];
                    DV[at + x] = dvt[x * KeyBlock + j];
                }
            }
        }
    }

    /// <summary>
    /// One backward work item's tile scratch: up to vectors query vectors' q and dO (Qs, Dos [vectors, D]),
    /// scores and dP / dS (Sc, Dps [vectors, KeyBlock]), lse and Di per vector, then the item's accumulators.
    /// Every part starts on a 32-byte boundary.
    /// </summary>
    private readonly struct BackwardScratch
    {
        public BackwardScratch(int vectors, int d, long accumulatorFloats)
        {
            long qsSize = Align8((long)vectors * d), scSize = (long)vectors * KeyBlock, rowSize = Align8(vectors);
            Qs = RentTile(2 * qsSize + 2 * scSize + 2 * rowSize + accumulatorFloats);
            Dos = Qs + qsSize;
            Sc = Dos + qsSize;
            Dps = Sc + scSize;
            Lse = Dps + scSize;
            Di = Lse + rowSize;
            Accumulators = Di + rowSize;
        }

        public float* Qs { get; }
        public float* Dos { get; }
        public float* Sc { get; }
        public float* Dps { get; }
        public float* Lse { get; }
        public float* Di { get; }
        public float* Accumulators { get; }
    }
}
