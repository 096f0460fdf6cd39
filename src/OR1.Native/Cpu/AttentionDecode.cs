using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuAttention
{
    /// <summary>
    /// One query row per batch entry attending to positions [0, lengths[b]) of cache slot cacheSlots[b].
    /// q, output [B, Hq*D]; keyCache, valueCache [slots, maxLength, Hkv*D].
    /// </summary>
    public static void Decode(float* q, float* keyCache, float* valueCache, int slots, int maxLength, int* cacheSlots,
        int* lengths, int batch, int numHeads, int numKvHeads, int headDim, float scale, float* output)
    {
        // Validate everything before any thread starts, so a bad entry leaves the output untouched.
        long work = 0;
        for (int b = 0; b < batch; b++)
        {
            if ((uint)cacheSlots[b] >= (uint)slots)
                throw new ArgumentException($"AttentionDecode: cacheSlots[{b}] = {cacheSlots[b]} is outside [0, {slots})", nameof(cacheSlots));
            if (lengths[b] < 1 || lengths[b] > maxLength)
                throw new ArgumentException($"AttentionDecode: lengths[{b}] = {lengths[b]} is outside [1, {maxLength}]", nameof(lengths));
            work += (long)lengths[b] * numHeads * headDim * 2;
        }
        if (batch == 0) return;
        var job = t_job ??= new Job();
        job.InitHeads(numHeads, numKvHeads, headDim, scale);
        job.Q = q; job.O = output; job.KCache = keyCache; job.VCache = valueCache;
        job.Slots = cacheSlots; job.Lengths = lengths; job.MaxLength = maxLength;
        try { RunItems(batch * numKvHeads, job.DecodeItem, work); }
        finally { job.Release(); }
    }

    private sealed partial class Job
    {
        /// <summary>One batch entry's kv group: its G query heads against the entry's cache prefix.</summary>
        private void RunDecodeItem(int item)
        {
            int b = item / Hkv, h = item % Hkv;
            int length = Lengths[b], g = G, d = D, dp = Dp, ldp = RoundUp8(length);
            long cacheRow = (long)Slots[b] * MaxLength;
            float* kRows = KCache + cacheRow * KvStride + h * d;
            float* vRows = VCache + cacheRow * KvStride + h * d;

            long qsSize = (long)g * dp, scSize = (long)g * ldp;
            float* qs = RentTile(2 * qsSize + scSize + Align8(g));
            float* o = qs + qsSize;
            float* sc = o + qsSize;
            float* l = sc + scSize;

            // Zero padding to a whole vector lets the score loop read full query vectors.
            for (int x = 0; x < g; x++)
            {
                float* dst = qs + (long)x * dp;
                ScaleCopy(dst, Q + (long)b * QStride + (h * g + x) * d, d, Scale2);
                for (int y = d; y < dp; y++) dst[y] = 0f;
            }
            // One query row per head: a transposed key pack would cost as much as the scores themselves,
            // so scores are dot products reduced eight keys at a time.
            DecodeScores(qs, g, dp, d, kRows, KvStride, length, sc, ldp);
            for (int x = 0; x < g; x++)
            {
                float* row = sc + (long)x * ldp;
                for (int j = length; j < ldp; j++) row[j] = float.NegativeInfinity;
                l[x] = ExpShiftSum(row, ldp, RowMax(row, ldp));
            }
            // Sixteen output columns per pass over the values: one cache line of each value row, which the
            // hardware prefetcher follows down the cache; the kernel's full 32 columns (two lines a row)
            // measured 8-10% slower at 1.5B widths.
            for (int x0 = 0; x0 < d; x0 += DecodeColumns)
                CpuGemm.MultiplyStrided(g, Math.Min(DecodeColumns, d - x0), length, sc, ldp, 1, vRows + x0, KvStride, o + x0, dp, accumulate: false);
            for (int x = 0; x < g; x++)
                ScaleCopy(O + (long)b * QStride + (h * g + x) * d, o + (long)x * dp, d, 1f / l[x]);
        }
    }

    /// <summary>
    /// sc[g * ldsc + j] = q_g · k_j for j &lt; length. q rows are zero-padded to dp; key rows are read
    /// with a mask past d because the last one may end the cache.
    /// </summary>
    private static void DecodeScores(float* qs, int groups, int dp, int d, float* kRows, int ldk, int length, float* sc, int ldsc)
    {
        if (!Simd)
        {
            for (int x = 0; x < groups; x++)
                for (int j = 0; j < length; j++)
                    sc[(long)x * ldsc + j] = Dot(qs + (long)x * dp, kRows + (long)j * ldk, d);
            return;
        }
        int full = d & ~7;
        var tail = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(d - full)).AsSingle();
        var k = stackalloc float*[8];
        for (int j0 = 0; j0 < length; j0 += 8)
        {
            // A ragged last group re-reads the final key; its scores land in the masked overhang.
            for (int t = 0; t < 8; t++) k[t] = kRows + (long)Math.Min(j0 + t, length - 1) * ldk;
            for (int x = 0; x < groups; x++)
            {
                float* qv = qs + (long)x * dp;
                Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default,
                    s4 = default, s5 = default, s6 = default, s7 = default;
                int c = 0;
                for (; c < full; c += 8)
                {
                    var qc = Avx.LoadVector256(qv + c);
                    s0 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k[0] + c), s0);
                    s1 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k[1] + c), s1);
                    s2 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k[2] + c), s2);
                    s3 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k[3] + c), s3);
                    s4 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k[4] + c), s4);
                    s5 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k[5] + c), s5);
                    s6 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k[6] + c), s6);
                    s7 = Fma.MultiplyAdd(qc, Avx.LoadVector256(k[7] + c), s7);
                }
                if (c < d)
                {
                    var qc = Avx.LoadVector256(qv + c);
                    s0 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k[0] + c, tail), s0);
                    s1 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k[1] + c, tail), s1);
                    s2 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k[2] + c, tail), s2);
                    s3 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k[3] + c, tail), s3);
                    s4 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k[4] + c, tail), s4);
                    s5 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k[5] + c, tail), s5);
                    s6 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k[6] + c, tail), s6);
                    s7 = Fma.MultiplyAdd(qc, Avx.MaskLoad(k[7] + c, tail), s7);
                }
                // Transposing reduction: eight accumulators become one vector of eight dot products.
                var h01 = Avx.HorizontalAdd(s0, s1);
                var h23 = Avx.HorizontalAdd(s2, s3);
                var h45 = Avx.HorizontalAdd(s4, s5);
                var h67 = Avx.HorizontalAdd(s6, s7);
                var lo = Avx.HorizontalAdd(h01, h23);
                var hi = Avx.HorizontalAdd(h45, h67);
                var sums = Avx.Add(Avx.Permute2x128(lo, hi, 0x20), Avx.Permute2x128(lo, hi, 0x31));
                Avx.Store(sc + (long)x * ldsc + j0, sums);
            }
        }
    }
}
