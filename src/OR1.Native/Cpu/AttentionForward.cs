namespace OR1.Native.Cpu;

internal static unsafe partial class CpuAttention
{
    /// <summary>
    /// Causal GQA forward over packed sequences. q, output [N, Hq*D]; k, v [N, Hkv*D]; logSumExp [N, Hq]
    /// receives ln Σ_{j ≤ i} exp(scale q_i·k_j) within the row's sequence.
    /// </summary>
    public static void Forward(float* q, float* k, float* v, int[] offsets, int numHeads, int numKvHeads, int headDim,
        float scale, float* output, float* logSumExp)
    {
        if (offsets[^1] == 0) return;
        var job = SequenceJob(offsets, numHeads, numKvHeads, headDim, scale, q, k, v, output, logSumExp);
        try
        {
            job.Kt = (t_pack ??= new Scratch()).Rent(job.KvPackFloats);
            long work = job.CausalWork();
            RunItems(job.PackCount, job.PackForward, work);
            job.PlanQueryTiles();
            RunItems(job.ItemCount, job.ForwardTile, work);
        }
        finally { job.Release(); }
    }

    private sealed partial class Job
    {
        /// <summary>
        /// One query tile: per softmax span (<see cref="SoftmaxSpan"/>), an online softmax over its key blocks with P V
        /// accumulated in o, merged into the tile's running result at the span's end. The decode walks a row's keys the
        /// same way, so both give the same bits.
        /// </summary>
        private void RunForwardTile(int item)
        {
            var tile = BlockAt(item, TileRows);
            int s = tile.Start, h = tile.Head, r0 = tile.First, rows = tile.Count;
            int g = G, d = D, dp = Dp, vectors = rows * g;

            long qsSize = Align8((long)vectors * d), scSize = (long)vectors * KeyBlock, oSize = (long)vectors * dp;
            int rowPad = RoundUp8(vectors);
            float* qs = RentTile(qsSize + scSize + 2 * oSize + 6L * rowPad);
            float* sc = qs + qsSize;
            float* o = sc + scSize;         // this span's accumulators
            float* oTotal = o + oSize;      // the merged spans'
            float* m = oTotal + oSize;
            float* mNew = m + rowPad;
            float* l = mNew + rowPad;
            float* alpha = l + rowPad;
            float* mTotal = alpha + rowPad;
            float* lTotal = mTotal + rowPad;

            LoadQueryTile(s + r0, rows, h, qs, null);
            for (int r = 0; r < rowPad; r++)
            {
                mTotal[r] = float.NegativeInfinity;
                lTotal[r] = 0f;
            }
            new Span<float>(oTotal, checked((int)oSize)).Clear();

            float* kt = Kt + (long)h * d * Npad + s;
            float* vRows = V + (long)s * KvStride + h * d;
            int keyEnd = r0 + rows;
            for (int span0 = 0; span0 < keyEnd; span0 += SoftmaxSpan)
            {
                int spanEnd = Math.Min(keyEnd, span0 + SoftmaxSpan);
                for (int r = 0; r < rowPad; r++)
                {
                    // Padding rows stay at 0 so the vectorised rescale below reads finite numbers.
                    m[r] = mNew[r] = r < vectors ? float.NegativeInfinity : 0f;
                    l[r] = 0f;
                }
                new Span<float>(o, checked((int)oSize)).Clear();
                for (int j0 = span0; j0 < spanEnd; j0 += KeyBlock)
                {
                    int bc = Math.Min(KeyBlock, spanEnd - j0), cols = RoundUp8(bc);
                    MaskedScores(vectors, bc, qs, kt + j0, r0 + 1 - j0, sc);
                    for (int r = 0; r < vectors; r++)
                        mNew[r] = VisibleKeys(r0 + 1 - j0, r, bc) == 0 ? m[r] : Math.Max(m[r], RowMax(sc + (long)r * KeyBlock, cols));
                    // Online softmax: what was summed under the old max is rescaled by 2^(m - mNew), which is
                    // 0 on a row's first block of the span (m = -inf) and 1 for rows this block leaves alone.
                    ExpDifference(m, mNew, alpha, rowPad);
                    for (int r = 0; r < vectors; r++)
                    {
                        float* row = sc + (long)r * KeyBlock;
                        if (mNew[r] == float.NegativeInfinity)
                        {
                            // A row that has seen nothing of this span yet (its position lies before this block).
                            new Span<float>(row, cols).Clear();
                            alpha[r] = 1f;
                            continue;
                        }
                        l[r] = l[r] * alpha[r] + ExpShiftSum(row, cols, mNew[r]);
                        m[r] = mNew[r];
                    }
                    ScaleRows(o, vectors, dp, alpha);
                    CpuGemm.MultiplyStrided(vectors, d, bc, sc, KeyBlock, 1, vRows + (long)j0 * KvStride, KvStride, o, dp, accumulate: true);
                }
                for (int r = 0; r < vectors; r++)
                    MergeSpan(ref mTotal[r], ref lTotal[r], oTotal + (long)r * dp, m[r], l[r], o + (long)r * dp, d);
            }

            for (int r = 0; r < vectors; r++)
            {
                long row = s + r0 + r / g;
                int head = h * g + r % g;
                ScaleCopy(O + row * QStride + head * d, oTotal + (long)r * dp, d, 1f / lTotal[r]);
                Lse[row * Hq + head] = mTotal[r] * Ln2 + MathF.Log(lTotal[r]);
            }
        }
    }
}
