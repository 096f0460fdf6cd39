using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuAttention
{
    /// <summary>Cache positions per decode block: a block's scores are [Hq, DecodeBlock], its K and V rows one contiguous run.</summary>
    private const int DecodeBlock = 128;

    /// <summary>The fewest positions in a decode chunk when a row is split across threads: below it, merging partials costs
    /// more than the parallelism gains.</summary>
    private const int DecodeMinChunk = 256;

    /// <summary>
    /// One query row per batch entry attending to positions [0, lengths[b]) of its pages: position p of row b is cache row
    /// pageTable[b * pagesPerRow + p / pageSize] * pageSize + p % pageSize. q, output [B, Hq*D]; keyCache, valueCache
    /// [pages, pageSize, Hkv*D] (a contiguous cache: one page per row, pageSize its capacity).
    /// </summary>
    /// <remarks>
    /// Flash-decoding on the CPU. A work item is a chunk of one row's positions with every head: a cache row holds all kv
    /// heads side by side, so an item reads one contiguous run of keys and one of values. Within an item, blocks of 128
    /// positions: the scores of all heads, eight positions at a time (each kv head's G query heads reuse its eight key
    /// slices from L1), an online-softmax update per head, then P·V on GEMM's micro-kernel into the item's accumulators.
    /// While it computes the scores it asks, a few lines per head, for the key rows 32 positions ahead and this block's
    /// value rows (into L2): the hardware prefetchers alone kept a core at about a third of its streaming rate, because
    /// a core that computes between loads has too few misses in flight. Rows are cut into chunks only when there are
    /// fewer rows than the threads need (batch 1): the chunk size comes from the total positions and the thread count, and
    /// the partials (max, sum, unnormalised output) of a row's chunks are merged in chunk order, so the result is
    /// deterministic for a fixed thread count. A block of positions never crosses a page (blocks end at page ends), so
    /// its key and value rows stay one contiguous run; pages below 128 rows make blocks shorter.
    /// </remarks>
    public static void Decode(float* q, float* keyCache, float* valueCache, int pages, int pageSize, int* pageTable, int pagesPerRow,
        int* lengths, int batch, int numHeads, int numKvHeads, int headDim, float scale, float* output)
    {
        // Validate everything before any thread starts, so a bad entry leaves the output untouched.
        long capacity = (long)pagesPerRow * pageSize;
        long positions = PagedDecodeCheck.Validate(new ReadOnlySpan<int>(lengths, batch), new ReadOnlySpan<int>(pageTable, batch * pagesPerRow),
            batch, pagesPerRow, pageSize, pages);
        if (batch == 0) return;
        var job = t_job ??= new Job();
        job.InitHeads(numHeads, numKvHeads, headDim, scale);
        job.Q = q; job.O = output; job.KCache = keyCache; job.VCache = valueCache;
        job.PageTable = pageTable; job.PagesPerRow = pagesPerRow; job.PageSize = pageSize; job.Lengths = lengths;
        job.MaxLength = (int)Math.Min(int.MaxValue, capacity);
        try
        {
            bool split = job.PlanDecodeChunks(batch, positions);
            long work = positions * numHeads * headDim * 2;
            RunItems(job.ItemCount, job.DecodeItem, work);
            if (split) RunItems(batch, job.DecodeMerge, work / DecodeMinChunk);
        }
        finally { job.Release(); }
    }

    private sealed partial class Job
    {
        /// <summary>Positions per decode chunk; the partials of split rows, <see cref="DecodePartialFloats"/> per item.</summary>
        public int DecodeChunk;
        public float* DecodePartials;
        /// <summary>Item offsets per row: row b's chunks are items [DecodeRowItems[b], DecodeRowItems[b + 1]).</summary>
        public int[] DecodeRowItems = [];

        /// <summary>A chunk's accumulators [Hq, Dp], then its max and sum per head.</summary>
        private long DecodePartialFloats => (long)Hq * Dp + 2 * Align8(Hq);

        /// <summary>
        /// Cuts rows into chunks so that there are about four items per thread (none shorter than DecodeMinChunk) and lists
        /// the items (row, first position) in row order. Returns whether some row has more than one chunk.
        /// </summary>
        public bool PlanDecodeChunks(int batch, long positions)
        {
            long wanted = 4L * CpuParallel.ThreadCount;
            long chunk = Math.Max(DecodeMinChunk, (positions + wanted - 1) / wanted);
            DecodeChunk = (int)Math.Min(MaxLength, (chunk + DecodeBlock - 1) / DecodeBlock * DecodeBlock);
            if (DecodeRowItems.Length < batch + 1) DecodeRowItems = new int[batch + 1];
            int count = 0;
            for (int b = 0; b < batch; b++)
            {
                DecodeRowItems[b] = count;
                count += (Lengths[b] + DecodeChunk - 1) / DecodeChunk;
            }
            DecodeRowItems[batch] = count;
            if (Items.Length < 2 * count) Items = new int[2 * count];
            for (int b = 0; b < batch; b++)
                for (int i = DecodeRowItems[b], first = 0; i < DecodeRowItems[b + 1]; i++, first += DecodeChunk)
                {
                    Items[2 * i] = b;
                    Items[2 * i + 1] = first;
                }
            ItemCount = count;
            bool split = count > batch;
            DecodePartials = split ? (t_pack ??= new Scratch()).Rent(count * DecodePartialFloats) : null;
            return split;
        }

        /// <summary>One chunk of one row, every head: its output when it is the whole row, else its partial.</summary>
        private void RunDecodeItem(int item)
        {
            int b = Items[2 * item], first = Items[2 * item + 1];
            int length = Lengths[b], end = Math.Min(length, first + DecodeChunk);
            int hq = Hq, g = G, d = D, dp = Dp;
            bool whole = first == 0 && end == length;
            int* table = PageTable + (long)b * PagesPerRow;
            int pageSize = PageSize;

            long qsSize = (long)hq * dp, scSize = (long)hq * DecodeBlock, state = Align8(hq);
            float* qs = RentTile(qsSize + scSize + (whole ? qsSize + 2 * state : 0));
            float* sc = qs + qsSize;
            float* acc = whole ? sc + scSize : DecodePartials + item * DecodePartialFloats;
            float* m = acc + qsSize;
            float* l = m + state;

            // Zero padding to a whole vector lets the score loop read full query vectors.
            for (int h = 0; h < hq; h++)
            {
                float* dst = qs + (long)h * dp;
                ScaleCopy(dst, Q + (long)b * QStride + (long)h * d, d, Scale2);
                for (int y = d; y < dp; y++) dst[y] = 0f;
                m[h] = float.NegativeInfinity;
                l[h] = 0f;
            }
            new Span<float>(acc, (int)qsSize).Clear();

            for (int j0 = first, n; j0 < end; j0 += n)
            {
                // A block ends at the chunk's end, after DecodeBlock positions, or at its page's end, whichever is first;
                // the rows ahead that the score loop asks for stay inside the page.
                int inPage = j0 % pageSize, pageLeft = pageSize - inPage;
                n = Math.Min(Math.Min(DecodeBlock, end - j0), pageLeft);
                int np = RoundUp8(n);
                long cacheRow = (long)table[j0 / pageSize] * pageSize + inPage;
                float* kBlock = KCache + cacheRow * KvStride, vBlock = VCache + cacheRow * KvStride;
                DecodeScores(qs, Hkv, g, dp, d, kBlock, vBlock, KvStride, n, Math.Min(Math.Min(end - j0, n + DecodeAhead), pageLeft), sc, DecodeBlock);
                for (int h = 0; h < hq; h++)
                {
                    float* row = sc + (long)h * DecodeBlock;
                    for (int j = n; j < np; j++) row[j] = float.NegativeInfinity;
                    float mNew = MathF.Max(m[h], RowMax(row, np));
                    float alpha = float.Exp2(m[h] - mNew);
                    l[h] = l[h] * alpha + ExpShiftSum(row, np, mNew);
                    if (alpha != 1f) ScaleCopy(acc + (long)h * dp, acc + (long)h * dp, d, alpha);
                    m[h] = mNew;
                }
                for (int hk = 0; hk < Hkv; hk++)
                    CpuGemm.MultiplyStrided(g, d, n, sc + (long)hk * g * DecodeBlock, DecodeBlock, 1, vBlock + (long)hk * d, KvStride,
                        acc + (long)hk * g * dp, dp, accumulate: true);
            }
            if (whole)
                for (int h = 0; h < hq; h++)
                    ScaleCopy(O + (long)b * QStride + (long)h * d, acc + (long)h * dp, d, 1f / l[h]);
        }

        /// <summary>Row b's chunks merged in chunk order: M = max m_c, out = sum acc_c 2^(m_c - M) / sum l_c 2^(m_c - M).</summary>
        private void RunDecodeMerge(int b)
        {
            int firstItem = DecodeRowItems[b], items = DecodeRowItems[b + 1] - firstItem;
            if (items == 1) return; // written by its item
            int hq = Hq, d = D, dp = Dp;
            long stride = DecodePartialFloats, state = Align8(hq);
            float* o = RentTile(dp);
            for (int h = 0; h < hq; h++)
            {
                float max = float.NegativeInfinity;
                for (int c = 0; c < items; c++) max = MathF.Max(max, DecodePartials[(firstItem + c) * stride + (long)hq * dp + h]);
                float sum = 0f;
                new Span<float>(o, dp).Clear();
                for (int c = 0; c < items; c++)
                {
                    float* partial = DecodePartials + (firstItem + c) * stride;
                    float weight = float.Exp2(partial[(long)hq * dp + h] - max);
                    sum += partial[(long)hq * dp + state + h] * weight;
                    AddScaled(o, partial + (long)h * dp, d, weight);
                }
                ScaleCopy(O + (long)b * QStride + (long)h * d, o, d, 1f / sum);
            }
        }
    }

    /// <summary>dst += weight * src over n floats.</summary>
    private static void AddScaled(float* dst, float* src, int n, float weight)
    {
        int i = 0;
        if (Simd)
        {
            var w = Vector256.Create(weight);
            for (; i + 8 <= n; i += 8) Avx.Store(dst + i, Fma.MultiplyAdd(Avx.LoadVector256(src + i), w, Avx.LoadVector256(dst + i)));
        }
        for (; i < n; i++) dst[i] = MathF.FusedMultiplyAdd(src[i], weight, dst[i]);
    }

    /// <summary>Positions ahead of the score loop whose key rows are asked for.</summary>
    private const int DecodeAhead = 32;

    /// <summary>
    /// prefetcht1: into L2, not L1. The score loop's own eight key rows must stay in L1 across the heads that reuse them; the
    /// requested lines (two 8-row runs every eight positions) would evict them there. Measured on one core at 7B widths:
    /// 5.7 GB/s without software prefetch, 9.0 with prefetcht0, 10.9 with prefetcht1 (before the row pointers moved to
    /// registers, which took it to about 17).
    /// </summary>
    private static void Prefetch(float* p)
    {
        if (Sse.IsSupported) Sse.Prefetch1(p);
    }

    /// <summary>
    /// sc[(hk * groups + x) * ldsc + j] = q_(hk, x) · k_j (kv head hk's slice of key row j) for j &lt; length: every kv head
    /// of eight rows while they are in L1. q rows are zero-padded to dp; key rows are read with a mask past d because the
    /// last one may end the cache. Meanwhile it asks for the cache lines of the key rows <see cref="DecodeAhead"/> positions
    /// on (below <paramref name="prefetchEnd"/>) and of this block's value rows, a few before each head's dot products: one
    /// core keeps too few misses in flight for the hardware prefetchers alone to stream two arrays while it computes.
    /// </summary>
    private static void DecodeScores(float* qs, int kvHeads, int groups, int dp, int d, float* kRows, float* vRows, int ldk, int length,
        int prefetchEnd, float* sc, int ldsc)
    {
        if (!Simd)
        {
            for (int hk = 0; hk < kvHeads; hk++)
                for (int x = 0; x < groups; x++)
                    for (int j = 0; j < length; j++)
                        sc[(long)(hk * groups + x) * ldsc + j] = Dot(qs + (long)(hk * groups + x) * dp, kRows + (long)j * ldk + (long)hk * d, d);
            return;
        }
        int full = d & ~7, heads = kvHeads * groups;
        var tail = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(d - full)).AsSingle();
        for (int j0 = 0; j0 < length; j0 += 8)
        {
            // Key rows [j0 + DecodeAhead, +8) and value rows [j0, +8) are each one contiguous run (a cache row holds every kv head).
            int aheadRows = Math.Clamp(prefetchEnd - j0 - DecodeAhead, 0, 8), valueRows = Math.Min(8, length - j0);
            float* kAhead = kRows + (long)(j0 + DecodeAhead) * ldk, vNow = vRows + (long)j0 * ldk;
            long kLines = (long)aheadRows * ldk / 16, lines = kLines + (long)valueRows * ldk / 16;
            long perHead = (lines + heads - 1) / heads, line = 0;
            for (int hk = 0; hk < kvHeads; hk++)
            {
                // A ragged last group re-reads the final key; its scores land in the masked overhang. Eight locals, not an
                // array, so the JIT keeps the row pointers in registers instead of reloading them for every load.
                float* slice = kRows + (long)hk * d;
                int last = length - 1;
                float* k0 = slice + (long)Math.Min(j0, last) * ldk, k1 = slice + (long)Math.Min(j0 + 1, last) * ldk;
                float* k2 = slice + (long)Math.Min(j0 + 2, last) * ldk, k3 = slice + (long)Math.Min(j0 + 3, last) * ldk;
                float* k4 = slice + (long)Math.Min(j0 + 4, last) * ldk, k5 = slice + (long)Math.Min(j0 + 5, last) * ldk;
                float* k6 = slice + (long)Math.Min(j0 + 6, last) * ldk, k7 = slice + (long)Math.Min(j0 + 7, last) * ldk;
                for (int x = 0; x < groups; x++)
                {
                    for (long stop = Math.Min(lines, line + perHead); line < stop; line++)
                        Prefetch(line < kLines ? kAhead + line * 16 : vNow + (line - kLines) * 16);
                    float* qv = qs + (long)(hk * groups + x) * dp;
                    Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default,
                        s4 = default, s5 = default, s6 = default, s7 = default;
                    int c = 0;
                    for (; c < full; c += 8)
                    {
                        var qc = Avx.LoadVector256(qv + c);
                        s0 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k0 + c), s0);
                        s1 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k1 + c), s1);
                        s2 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k2 + c), s2);
                        s3 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k3 + c), s3);
                        s4 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k4 + c), s4);
                        s5 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k5 + c), s5);
                        s6 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k6 + c), s6);
                        s7 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k7 + c), s7);
                    }
                    if (c < d)
                    {
                        var qc = Avx.LoadVector256(qv + c);
                        s0 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k0 + c, tail), s0);
                        s1 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k1 + c, tail), s1);
                        s2 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k2 + c, tail), s2);
                        s3 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k3 + c, tail), s3);
                        s4 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k4 + c, tail), s4);
                        s5 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k5 + c, tail), s5);
                        s6 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k6 + c, tail), s6);
                        s7 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k7 + c, tail), s7);
                    }
                    // Transposing reduction: eight accumulators become one vector of eight dot products.
                    var h01 = Avx.HorizontalAdd(s0, s1);
                    var h23 = Avx.HorizontalAdd(s2, s3);
                    var h45 = Avx.HorizontalAdd(s4, s5);
                    var h67 = Avx.HorizontalAdd(s6, s7);
                    var lo = Avx.HorizontalAdd(h01, h23);
                    var hi = Avx.HorizontalAdd(h45, h67);
                    var sums = Avx.Add(Avx.Permute2x128(lo, hi, 0x20), Avx.Permute2x128(lo, hi, 0x31));
                    Avx.Store(sc + (long)(hk * groups + x) * ldsc + j0, sums);
                }
            }
        }
    }
}
