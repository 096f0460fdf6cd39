using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuAttention
{
    /// <summary>
    /// One query row per batch entry attending to positions [0, lengths[b]) of its pages: position p of row b is cache row
    /// pageTable[b * pagesPerRow + p / pageSize] * pageSize + p % pageSize. q, output [B, Hq*D]; valueCache
    /// [pages, pageSize, Hkv*D] (a contiguous cache: one page per row, pageSize its capacity); keyCache the same floats in
    /// the Cpu backend's <see cref="KeyCacheLayout.PageTransposed"/> layout (each page [Hkv*D, pageSize], written by
    /// <see cref="WriteKeys"/>).
    /// </summary>
    /// <remarks>
    /// Flash-decoding on the CPU, computed as the forward computes the same query row (<see cref="SoftmaxSpan"/>): keys in
    /// blocks of <see cref="KeyBlock"/> positions, scores on GEMM's micro-kernel (each score sums its head dimension in the
    /// forward's order), an online softmax per span, P·V on the micro-kernel adding each position in order, spans merged
    /// in order. So the rollout engine's decode of a token gives the bits of the trainer's forward over the whole
    /// sequence, whatever the batch, the pages or the split. The forward transposes a sequence's keys once for its score
    /// products; decode reads a block's keys many times (once per step of every later token), so the cache keeps them
    /// transposed within each page and the score product reads them where they are: transposing each block at every
    /// step cost the Groups case of the engine benchmark 4.5 % of its throughput. A work item is a chunk of whole spans
    /// of one row with every head (a page holds all kv heads, so an item reads runs of keys and values); rows are cut
    /// into chunks only when there are fewer rows than the threads need (batch 1), and then every span of a cut row
    /// leaves its partial, which a second pass merges in span order, as an uncut row's item does itself. A block may
    /// cross pages: it is computed page run by page run, into the same scores and the same in-order sums. While an item
    /// works on a block it asks for the next block's keys and this block's values (into L2): a core that computes
    /// between loads keeps too few misses in flight for the hardware prefetchers alone.
    /// </remarks>
    public static void Decode(float* q, float* keyCache, float* valueCache, int pages, int pageSize, int* pageTable, int pagesPerRow,
        int* lengths, int batch, int numHeads, int numKvHeads, int headDim, float scale, float* output)
    {
        // Validate everything before any thread starts, so a bad entry leaves the output untouched.
        long positions = PagedDecodeCheck.Validate(new ReadOnlySpan<int>(lengths, batch), new ReadOnlySpan<int>(pageTable, batch * pagesPerRow),
            batch, pagesPerRow, pageSize, pages);
        if (batch == 0) return;
        var job = t_job ??= new Job();
        job.InitHeads(numHeads, numKvHeads, headDim, scale);
        job.Q = q; job.O = output; job.KCache = keyCache; job.VCache = valueCache;
        job.PageTable = pageTable; job.PagesPerRow = pagesPerRow; job.PageSize = pageSize; job.Lengths = lengths;
        try
        {
            bool split = job.PlanDecodeChunks(batch, positions);
            long work = positions * numHeads * headDim * 2;
            RunItems(job.ItemCount, job.DecodeItem, work);
            if (split) RunItems(batch, job.DecodeMerge, work / SoftmaxSpan);
        }
        finally { job.Release(); }
    }

    private sealed partial class Job
    {
        /// <summary>Positions per decode chunk (whole spans); the span partials of cut rows, <see cref="DecodePartialFloats"/> each.</summary>
        public int DecodeChunk;
        public float* DecodePartials;
        /// <summary>Item offsets per row: row b's chunks are items [DecodeRowItems[b], DecodeRowItems[b + 1]).</summary>
        public int[] DecodeRowItems = [];
        /// <summary>Partial slots per row when rows are cut: row b's spans are slots [DecodeRowSpans[b], DecodeRowSpans[b + 1]).</summary>
        public int[] DecodeRowSpans = [];

        /// <summary>A span's accumulators [Hq, Dp], then its max and sum per head.</summary>
        private long DecodePartialFloats => (long)Hq * Dp + 2 * Align8(Hq);

        /// <summary>
        /// Cuts rows into chunks of whole spans so that there are about four items per thread and lists the items (row,
        /// first position) in row order. Returns whether some row has more than one chunk.
        /// </summary>
        public bool PlanDecodeChunks(int batch, long positions)
        {
            long wanted = 4L * CpuParallel.ThreadCount;
            long chunk = Math.Max(SoftmaxSpan, (positions + wanted - 1) / wanted);
            DecodeChunk = (int)Math.Min(int.MaxValue / 2, (chunk + SoftmaxSpan - 1) / SoftmaxSpan * SoftmaxSpan);
            if (DecodeRowItems.Length < batch + 1)
            {
                DecodeRowItems = new int[batch + 1];
                DecodeRowSpans = new int[batch + 1];
            }
            int count = 0, spans = 0;
            for (int b = 0; b < batch; b++)
            {
                DecodeRowItems[b] = count;
                DecodeRowSpans[b] = spans;
                count += (Lengths[b] + DecodeChunk - 1) / DecodeChunk;
                spans += (Lengths[b] + SoftmaxSpan - 1) / SoftmaxSpan;
            }
            DecodeRowItems[batch] = count;
            DecodeRowSpans[batch] = spans;
            if (Items.Length < 2 * count) Items = new int[2 * count];
            for (int b = 0; b < batch; b++)
                for (int i = DecodeRowItems[b], first = 0; i < DecodeRowItems[b + 1]; i++, first += DecodeChunk)
                {
                    Items[2 * i] = b;
                    Items[2 * i + 1] = first;
                }
            ItemCount = count;
            bool split = count > batch;
            DecodePartials = split ? (t_pack ??= new Scratch()).Rent(spans * DecodePartialFloats) : null;
            return split;
        }

        /// <summary>Cache row of position p of the row whose page table is table.</summary>
        private long CacheRow(int* table, int p) => (long)table[p / PageSize] * PageSize + p % PageSize;

        /// <summary>
        /// One chunk of one row, every head, span by span: the spans merged into the row's output when the chunk is the
        /// whole row, else each span's partial into its slot.
        /// </summary>
        private void RunDecodeItem(int item)
        {
            int b = Items[2 * item], first = Items[2 * item + 1];
            int length = Lengths[b], end = Math.Min(length, first + DecodeChunk);
            int hq = Hq, g = G, d = D, dp = Dp, kvStride = KvStride;
            bool whole = first == 0 && end == length;
            int* table = PageTable + (long)b * PagesPerRow;

            long qsSize = (long)hq * dp, scSize = (long)hq * KeyBlock, state = Align8(hq);
            float* qs = RentTile(2 * qsSize + scSize + 6 * state + (whole ? qsSize : 0));
            float* sc = qs + qsSize;
            float* mNew = sc + scSize;
            float* alpha = mNew + state;
            float* mTotal = alpha + state;
            float* lTotal = mTotal + state;
            float* oTotal = lTotal + state;      // whole rows only
            float* acc = oTotal + (whole ? qsSize : 0);
            float* m = acc + qsSize, l = m + state;

            // Zero padding to a whole vector; the padding heads' maxima stay 0 so the vectorised rescale reads finite numbers.
            for (int h = 0; h < state; h++)
            {
                if (h < hq)
                {
                    float* dst = qs + (long)h * dp;
                    ScaleCopy(dst, Q + (long)b * QStride + (long)h * d, d, Scale2);
                    for (int y = d; y < dp; y++) dst[y] = 0f;
                }
                mTotal[h] = float.NegativeInfinity;
                lTotal[h] = 0f;
            }
            if (whole) new Span<float>(oTotal, (int)qsSize).Clear();

            for (int span0 = first; span0 < end; span0 += SoftmaxSpan)
            {
                int spanEnd = Math.Min(end, span0 + SoftmaxSpan);
                if (!whole)
                {
                    // A cut row's span leaves its partial in its slot: accumulators, then maxima and sums.
                    acc = DecodePartials + (DecodeRowSpans[b] + span0 / SoftmaxSpan) * DecodePartialFloats;
                    m = acc + qsSize;
                    l = m + state;
                }
                for (int h = 0; h < state; h++)
                {
                    m[h] = mNew[h] = h < hq ? float.NegativeInfinity : 0f;
                    l[h] = 0f;
                }
                new Span<float>(acc, (int)qsSize).Clear();
                for (int j0 = span0; j0 < spanEnd; j0 += KeyBlock)
                {
                    int n = Math.Min(KeyBlock, spanEnd - j0), np = RoundUp8(n);
                    PrefetchKeys(table, j0 + KeyBlock, Math.Min(end, j0 + 2 * KeyBlock));
                    PrefetchRows(table, VCache, j0, j0 + n);
                    // Each kv head's scores of the block, page run by page run, from the keys where the page keeps them.
                    for (int hk = 0; hk < Hkv; hk++)
                        for (int p = j0, run; p < j0 + n; p += run)
                        {
                            run = Math.Min(j0 + n - p, PageSize - p % PageSize);
                            CpuGemm.MultiplyStrided(g, run, d, qs + (long)hk * g * dp, dp, 1, KeyColumns(table, p) + (long)hk * d * PageSize, PageSize,
                                sc + (long)hk * g * KeyBlock + (p - j0), KeyBlock, accumulate: false);
                        }
                    for (int h = 0; h < hq; h++)
                    {
                        float* row = sc + (long)h * KeyBlock;
                        for (int j = n; j < np; j++) row[j] = float.NegativeInfinity;
                        mNew[h] = Math.Max(m[h], RowMax(row, np));
                    }
                    ExpDifference(m, mNew, alpha, (int)state);
                    for (int h = 0; h < hq; h++)
                    {
                        l[h] = l[h] * alpha[h] + ExpShiftSum(sc + (long)h * KeyBlock, np, mNew[h]);
                        if (alpha[h] != 1f) ScaleCopy(acc + (long)h * dp, acc + (long)h * dp, d, alpha[h]);
                        m[h] = mNew[h];
                    }
                    for (int p = j0, run; p < j0 + n; p += run)
                    {
                        run = Math.Min(j0 + n - p, PageSize - p % PageSize);
                        float* vRun = VCache + CacheRow(table, p) * kvStride;
                        for (int hk = 0; hk < Hkv; hk++)
                            CpuGemm.MultiplyStrided(g, d, run, sc + (long)hk * g * KeyBlock + (p - j0), KeyBlock, 1, vRun + (long)hk * d, kvStride,
                                acc + (long)hk * g * dp, dp, accumulate: true);
                    }
                }
                if (whole)
                    for (int h = 0; h < hq; h++)
                        MergeSpan(ref mTotal[h], ref lTotal[h], oTotal + (long)h * dp, m[h], l[h], acc + (long)h * dp, d);
            }
            if (whole)
                for (int h = 0; h < hq; h++)
                    ScaleCopy(O + (long)b * QStride + (long)h * d, oTotal + (long)h * dp, d, 1f / lTotal[h]);
        }

        /// <summary>Row b's span partials merged in span order (as an uncut row's item merges them), then normalised.</summary>
        private void RunDecodeMerge(int b)
        {
            if (DecodeRowItems[b + 1] - DecodeRowItems[b] == 1) return; // written by its item
            int hq = Hq, d = D, dp = Dp;
            long stride = DecodePartialFloats, state = Align8(hq);
            float* o = RentTile(dp);
            for (int h = 0; h < hq; h++)
            {
                float mTotal = float.NegativeInfinity, lTotal = 0f;
                new Span<float>(o, dp).Clear();
                for (int c = DecodeRowSpans[b]; c < DecodeRowSpans[b + 1]; c++)
                {
                    float* partial = DecodePartials + c * stride;
                    float* stats = partial + (long)hq * dp;
                    MergeSpan(ref mTotal, ref lTotal, o, stats[h], stats[state + h], partial + (long)h * dp, d);
                }
                ScaleCopy(O + (long)b * QStride + (long)h * d, o, d, 1f / lTotal);
            }
        }

        /// <summary>Position p's column of keys (element x of it pageSize floats on) in the transposed page of the row whose page table is table.</summary>
        private float* KeyColumns(int* table, int p) => KCache + (long)table[p / PageSize] * PageSize * KvStride + p % PageSize;

        /// <summary>Asks for the keys of positions [from, to) of a row (into L2), page run by page run: a run of every column.</summary>
        private void PrefetchKeys(int* table, int from, int to)
        {
            if (!Sse.IsSupported) return;
            for (int p = from, run; p < to; p += run)
            {
                run = Math.Min(to - p, PageSize - p % PageSize);
                float* start = KeyColumns(table, p);
                for (int x = 0; x < KvStride; x++)
                {
                    byte* column = (byte*)(start + (long)x * PageSize);
                    for (int at = 0; at < run * sizeof(float); at += 64) Sse.Prefetch1(column + at);
                }
            }
        }

        /// <summary>
        /// Asks for the cache lines of positions [from, to) of a row (into L2, not L1: the block in use must stay in L1),
        /// page run by page run.
        /// </summary>
        private void PrefetchRows(int* table, float* cache, int from, int to)
        {
            if (!Sse.IsSupported) return;
            for (int p = from, run; p < to; p += run)
            {
                run = Math.Min(to - p, PageSize - p % PageSize);
                byte* start = (byte*)(cache + CacheRow(table, p) * KvStride);
                long bytes = (long)run * KvStride * sizeof(float);
                for (long at = 0; at < bytes; at += 64) Sse.Prefetch1(start + at);
            }
        }
    }
}
