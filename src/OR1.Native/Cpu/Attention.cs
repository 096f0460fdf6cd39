using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

/// <summary>
/// Fused causal grouped-query attention for the Cpu backend: FlashAttention-2 tiling in fp32, so the
/// [S, S] score matrix never exists and K/V are read once per tile rather than once per query row.
/// </summary>
/// <remarks>
/// <para>Every product is one small GEMM, <see cref="Gemm"/>, whose B operand is vectorised along the
/// output columns. Scores need the contracted head dimension on the outside, so the keys (forward)
/// or keys, values, queries and output gradients (backward) are first transposed once per call into a
/// per-thread pack buffer; that is O(N·D) against the O(S²·D) attention work.</para>
/// <para>A tile is the G = Hq / Hkv query heads of one kv group over a block of query rows: the G heads
/// share every K/V row, so grouping them multiplies the reuse of each loaded key by G.</para>
/// <para>The backward runs as two passes so that every output row has exactly one writer (deterministic
/// for any thread count, no atomics, no partial buffers): pass 1 over query tiles recomputes P and
/// accumulates dQ; pass 2 over key blocks recomputes P and accumulates dK and dV. Recomputing P twice
/// costs 7 instead of 5 GEMM-equivalents but keeps the memory at O(N) and scales with the threads even
/// for one long sequence and one kv head.</para>
/// </remarks>
internal static unsafe class CpuAttention
{
    /// <summary>Keys per score tile (forward, dQ pass) and key rows per dK/dV item before shrinking.</summary>
    internal static long[] DevT = new long[4];
    private const int KeyBlock = 64;

    /// <summary>
    /// Query vectors (rows × heads of a group) per tile: 64 rows of 64 scores is 16 KiB, which keeps a
    /// score tile in L1 next to the key panel it is multiplied with.
    /// </summary>
    private const int TileVectors = 64;

    /// <summary>Tiles are not shrunk below this many query vectors for load balance; GEMM efficiency drops fast below it.</summary>
    private const int MinTileVectors = 16;

    /// <summary>Rows per packing work item.</summary>
    private const int PackRows = 128;

    /// <summary>Below this many multiply-adds a call runs on the calling thread: the fork would cost more than it saves.</summary>
    private const long InlineWork = 1 << 15;

    private static bool Simd => Fma.IsSupported && Avx2.IsSupported && Vector256.IsHardwareAccelerated;

    /// <summary>Per worker thread: tile scratch, reused across calls so the steady state allocates nothing.</summary>
    [ThreadStatic] private static Scratch? t_tile;

    /// <summary>Per calling thread: the transposed packs of one call, shared read-only by its workers.</summary>
    [ThreadStatic] private static Scratch? t_pack;

    /// <summary>Per calling thread: the job whose cached delegates the pool runs, so a call allocates no closures.</summary>
    [ThreadStatic] private static Job? t_job;

    // ---------------------------------------------------------------- entry points

    /// <summary>
    /// Causal GQA forward over packed sequences. q, output [N, Hq*D]; k, v [N, Hkv*D]; logSumExp [N, Hq]
    /// receives ln Σ_{j ≤ i} exp(scale q_i·k_j) within the row's sequence.
    /// </summary>
    public static void Forward(float* q, float* k, float* v, int[] offsets, int numHeads, int numKvHeads, int headDim,
        float scale, float* output, float* logSumExp)
    {
        if (offsets[^1] == 0) return;
        var job = t_job ??= new Job();
        job.Init(offsets, numHeads, numKvHeads, headDim, scale);
        job.Q = q; job.K = k; job.V = v; job.O = output; job.Lse = logSumExp;
        job.Kt = (t_pack ??= new Scratch()).Rent(job.KvPackFloats);
        try
        {
            long work = job.CausalWork();
            RunItems(job.PackCount, job.PackForward, work);
            job.PlanQueryTiles();
            RunItems(job.ItemCount, job.ForwardTile, work);
        }
        finally { job.Release(); }
    }

    /// <summary>
    /// Gradients of <see cref="Forward"/> (dq, dk, dv overwrite) from dOutput and the forward's output and logSumExp.
    /// </summary>
    public static void Backward(float* dOutput, float* q, float* k, float* v, float* output, float* logSumExp,
        int[] offsets, int numHeads, int numKvHeads, int headDim, float scale, float* dq, float* dk, float* dv)
    {
        if (offsets[^1] == 0) return;
        var job = t_job ??= new Job();
        job.Init(offsets, numHeads, numKvHeads, headDim, scale);
        job.Q = q; job.K = k; job.V = v; job.O = output; job.Lse = logSumExp;
        job.DO = dOutput; job.DQ = dq; job.DK = dk; job.DV = dv;
        long kv = job.KvPackFloats, qg = job.QPackFloats, rows = job.GroupRowFloats;
        float* pack = (t_pack ??= new Scratch()).Rent(2 * kv + 2 * qg + 2 * rows);
        job.Kt = pack;
        job.Vt = pack + kv;
        job.Qt = pack + 2 * kv;
        job.DOt = pack + 2 * kv + qg;
        job.LseG = pack + 2 * kv + 2 * qg;
        job.DiG = pack + 2 * kv + 2 * qg + rows;
        try
        {
            long work = job.CausalWork();
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            RunItems(job.PackCount, job.PackBackward, work);
            long t1 = System.Diagnostics.Stopwatch.GetTimestamp();
            job.PlanQueryTiles();
            RunItems(job.ItemCount, job.DqTile, work);
            long t2 = System.Diagnostics.Stopwatch.GetTimestamp();
            job.PlanKeyBlocks();
            RunItems(job.ItemCount, job.DkvBlock, work);
            long t3 = System.Diagnostics.Stopwatch.GetTimestamp();
            DevT[0] += t1 - t0; DevT[1] += t2 - t1; DevT[2] += t3 - t2;
        }
        finally { job.Release(); }
    }

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

    private static void RunItems(int count, Action<int> body, long work)
    {
        if (count <= 0) return;
        if (work < InlineWork || count == 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        CpuParallel.ForEach(count, body);
    }

    // ---------------------------------------------------------------- the job: arguments and work items

    /// <summary>
    /// The arguments of the call in flight plus its work-item table. Fields are written by the calling
    /// thread before it forks; the pool's start signal publishes them to the workers.
    /// </summary>
    private sealed class Job
    {
        public float* Q, K, V, O, Lse, DO, DQ, DK, DV;
        public float* Kt, Vt, Qt, DOt, LseG, DiG;
        public float* KCache, VCache;
        public int* Slots, Lengths;
        public int MaxLength;
        public int[] Offsets = [];
        public int Hq, Hkv, D, Dp, G, QStride, KvStride, N;
        /// <summary>Row length of the transposed K/V packs: N plus room for a tile's last vector to overhang.</summary>
        public int Npad;
        /// <summary>Row length of the transposed query packs, whose columns are (row, head-in-group) pairs.</summary>
        public int NGpad;
        public float Scale;
        public int PackChunks;
        public int TileRows;
        public int KeyRows;
        public int[] Items = new int[96];
        public int ItemCount;

        public readonly Action<int> PackForward, PackBackward, ForwardTile, DqTile, DkvBlock, DecodeItem;

        public Job()
        {
            PackForward = RunPackForward;
            PackBackward = RunPackBackward;
            ForwardTile = RunForwardTile;
            DqTile = RunDqTile;
            DkvBlock = RunDkvBlock;
            DecodeItem = RunDecodeItem;
        }

        public int PackCount => Hkv * PackChunks;
        public long KvPackFloats => (long)Hkv * D * Npad;
        public long QPackFloats => (long)Hkv * D * NGpad;
        public long GroupRowFloats => (long)Hkv * NGpad;

        public void InitHeads(int numHeads, int numKvHeads, int headDim, float scale)
        {
            Hq = numHeads;
            Hkv = numKvHeads;
            D = headDim;
            Dp = RoundUp8(headDim);
            G = numHeads / numKvHeads;
            QStride = numHeads * headDim;
            KvStride = numKvHeads * headDim;
            Scale = scale;
        }

        public void Init(int[] offsets, int numHeads, int numKvHeads, int headDim, float scale)
        {
            InitHeads(numHeads, numKvHeads, headDim, scale);
            Offsets = offsets;
            N = offsets[^1];
            Npad = RoundUp8(N) + 8;
            NGpad = RoundUp8(N * G) + 8;
            PackChunks = (N + PackRows - 1) / PackRows;
        }

        /// <summary>Drops the references of the finished call so the job does not keep them alive.</summary>
        public void Release()
        {
            Offsets = [];
            Q = K = V = O = Lse = DO = DQ = DK = DV = null;
            Kt = Vt = Qt = DOt = LseG = DiG = KCache = VCache = null;
            Slots = Lengths = null;
        }

        /// <summary>Multiply-adds of the causal score product, to decide whether forking pays.</summary>
        public long CausalWork()
        {
            long work = 0;
            for (int s = 0; s + 1 < Offsets.Length; s++)
            {
                long len = Offsets[s + 1] - Offsets[s];
                work += len * (len + 1) / 2;
            }
            return work * Hq * D;
        }

        private int CountItems(int rowsPerItem)
        {
            long count = 0;
            for (int s = 0; s + 1 < Offsets.Length; s++)
                count += (Offsets[s + 1] - Offsets[s] + rowsPerItem - 1) / rowsPerItem;
            return (int)Math.Min(int.MaxValue, count * Hkv);
        }

        /// <summary>Query-row tiles for the forward and the dQ pass.</summary>
        public void PlanQueryTiles()
        {
            int rows = Math.Max(1, TileVectors / G);
            // Short sequences or few kv heads leave too few tiles to balance: trade GEMM size for items.
            int wanted = 4 * CpuParallel.ThreadCount;
            while (rows > 1 && rows / 2 * G >= MinTileVectors && CountItems(rows) < wanted) rows /= 2;
            TileRows = rows;
            // Pass 2 walks query rows in tiles of the same size.
            BuildItems(rows, costFromEnd: false);
        }

        /// <summary>Key-row blocks for the dK/dV pass.</summary>
        public void PlanKeyBlocks()
        {
            int rows = KeyBlock;
            int wanted = 4 * CpuParallel.ThreadCount;
            while (rows > 16 && CountItems(rows) < wanted) rows /= 2;
            KeyRows = rows;
            BuildItems(rows, costFromEnd: true);
        }

        /// <summary>
        /// Lists (sequence, kv head, block) items, most expensive first, so the pool's dynamic claiming
        /// behaves like longest-processing-time scheduling. Under a causal mask a query block's cost grows
        /// with its index and a key block's cost with its distance from the sequence end; blocks of the
        /// same rank cost the same in every sequence.
        /// </summary>
        private void BuildItems(int rowsPerItem, bool costFromEnd)
        {
            int count = CountItems(rowsPerItem), maxBlocks = 0;
            for (int s = 0; s + 1 < Offsets.Length; s++)
                maxBlocks = Math.Max(maxBlocks, (Offsets[s + 1] - Offsets[s] + rowsPerItem - 1) / rowsPerItem);
            if (Items.Length < 3L * count) Items = new int[checked(3 * count)];
            int w = 0;
            for (int rank = maxBlocks - 1; rank >= 0; rank--)
            {
                for (int s = 0; s + 1 < Offsets.Length; s++)
                {
                    int blocks = (Offsets[s + 1] - Offsets[s] + rowsPerItem - 1) / rowsPerItem;
                    if (blocks <= rank) continue;
                    int block = costFromEnd ? blocks - 1 - rank : rank;
                    for (int h = 0; h < Hkv; h++)
                    {
                        Items[w++] = s;
                        Items[w++] = h;
                        Items[w++] = block;
                    }
                }
            }
            ItemCount = count;
        }

        // ------------------------------------------------------------ packing

        private void RunPackForward(int item)
        {
            int h = item / PackChunks, chunk = item % PackChunks;
            int n0 = chunk * PackRows, n1 = Math.Min(N, n0 + PackRows), end = chunk == PackChunks - 1 ? Npad : n1;
            PackTransposed(K + h * D, 1, KvStride, 0, n0, n1, end, D, Kt + (long)h * D * Npad, Npad, 1f);
        }

        private void RunPackBackward(int item)
        {
            int h = item / PackChunks, chunk = item % PackChunks;
            int n0 = chunk * PackRows, n1 = Math.Min(N, n0 + PackRows);
            bool last = chunk == PackChunks - 1;
            PackTransposed(K + h * D, 1, KvStride, 0, n0, n1, last ? Npad : n1, D, Kt + (long)h * D * Npad, Npad, 1f);
            PackTransposed(V + h * D, 1, KvStride, 0, n0, n1, last ? Npad : n1, D, Vt + (long)h * D * Npad, Npad, 1f);

            // Query-side packs have one column per (row, head-in-group), so a tile of rows is one
            // contiguous column range. Queries are pre-scaled so the pass-2 GEMM yields scaled scores.
            int c0 = n0 * G, c1 = n1 * G, end = last ? NGpad : c1;
            long at = (long)h * G * D;
            PackTransposed(Q + at, G, QStride, D, c0, c1, end, D, Qt + (long)h * D * NGpad, NGpad, Scale);
            PackTransposed(DO + at, G, QStride, D, c0, c1, end, D, DOt + (long)h * D * NGpad, NGpad, 1f);
            float* lseG = LseG + (long)h * NGpad;
            float* diG = DiG + (long)h * NGpad;
            for (int n = n0; n < n1; n++)
            {
                float* src = Lse + (long)n * Hq + h * G;
                for (int g = 0; g < G; g++) lseG[(long)n * G + g] = src[g];
            }
            // Pass 1 fills the real Di entries; the overhang read by pass 2's last vector must be finite.
            for (int c = c1; c < end; c++) lseG[c] = diG[c] = 0f;
        }

        /// <summary>
        /// dst[x * ld + c] = scale * column(c)[x] for x &lt; d and c in [c0, c1), zeros for c in [c1, end),
        /// where column(c) = src + (c / group) * outer + (c % group) * inner.
        /// </summary>
        private static void PackTransposed(float* src, int group, long outer, int inner, int c0, int c1, int end, int d,
            float* dst, long ld, float scale)
        {
            var from = stackalloc float*[8];
            for (int c = c0; c < c1; c += 8)
            {
                int count = Math.Min(8, c1 - c);
                for (int t = 0; t < count; t++) from[t] = src + (c + t) / group * outer + (long)((c + t) % group) * inner;
                int x = 0;
                if (Simd && count == 8)
                {
                    var sv = Vector256.Create(scale);
                    for (; x + 8 <= d; x += 8) Transpose8x8(from, x, dst + x * ld + c, ld, sv);
                }
                for (; x < d; x++)
                    for (int t = 0; t < count; t++) dst[x * ld + c + t] = scale * from[t][x];
            }
            for (int x = 0; x < d; x++)
                for (int c = c1; c < end; c++) dst[x * ld + c] = 0f;
        }

        /// <summary>Eight source rows at offset x become eight destination rows of eight columns.</summary>
        private static void Transpose8x8(float** from, int x, float* dst, long ld, Vector256<float> scale)
        {
            var r0 = Avx.Multiply(Avx.LoadVector256(from[0] + x), scale);
            var r1 = Avx.Multiply(Avx.LoadVector256(from[1] + x), scale);
            var r2 = Avx.Multiply(Avx.LoadVector256(from[2] + x), scale);
            var r3 = Avx.Multiply(Avx.LoadVector256(from[3] + x), scale);
            var r4 = Avx.Multiply(Avx.LoadVector256(from[4] + x), scale);
            var r5 = Avx.Multiply(Avx.LoadVector256(from[5] + x), scale);
            var r6 = Avx.Multiply(Avx.LoadVector256(from[6] + x), scale);
            var r7 = Avx.Multiply(Avx.LoadVector256(from[7] + x), scale);
            var t0 = Avx.UnpackLow(r0, r1);
            var t1 = Avx.UnpackHigh(r0, r1);
            var t2 = Avx.UnpackLow(r2, r3);
            var t3 = Avx.UnpackHigh(r2, r3);
            var t4 = Avx.UnpackLow(r4, r5);
            var t5 = Avx.UnpackHigh(r4, r5);
            var t6 = Avx.UnpackLow(r6, r7);
            var t7 = Avx.UnpackHigh(r6, r7);
            var s0 = Avx.Shuffle(t0, t2, 0x44);
            var s1 = Avx.Shuffle(t0, t2, 0xEE);
            var s2 = Avx.Shuffle(t1, t3, 0x44);
            var s3 = Avx.Shuffle(t1, t3, 0xEE);
            var s4 = Avx.Shuffle(t4, t6, 0x44);
            var s5 = Avx.Shuffle(t4, t6, 0xEE);
            var s6 = Avx.Shuffle(t5, t7, 0x44);
            var s7 = Avx.Shuffle(t5, t7, 0xEE);
            Avx.Store(dst, Avx.Permute2x128(s0, s4, 0x20));
            Avx.Store(dst + ld, Avx.Permute2x128(s1, s5, 0x20));
            Avx.Store(dst + 2 * ld, Avx.Permute2x128(s2, s6, 0x20));
            Avx.Store(dst + 3 * ld, Avx.Permute2x128(s3, s7, 0x20));
            Avx.Store(dst + 4 * ld, Avx.Permute2x128(s0, s4, 0x31));
            Avx.Store(dst + 5 * ld, Avx.Permute2x128(s1, s5, 0x31));
            Avx.Store(dst + 6 * ld, Avx.Permute2x128(s2, s6, 0x31));
            Avx.Store(dst + 7 * ld, Avx.Permute2x128(s3, s7, 0x31));
        }

        // ------------------------------------------------------------ forward

        private void RunForwardTile(int item)
        {
            int seq = Items[3 * item], h = Items[3 * item + 1], block = Items[3 * item + 2];
            int s = Offsets[seq], len = Offsets[seq + 1] - s;
            int r0 = block * TileRows, rows = Math.Min(len, r0 + TileRows) - r0;
            int g = G, d = D, dp = Dp, vectors = rows * g;

            long qsSize = Align8((long)vectors * d), scSize = (long)vectors * KeyBlock, oSize = (long)vectors * dp;
            float* qs = (t_tile ??= new Scratch()).Rent(qsSize + scSize + oSize + 3 * Align8(vectors));
            float* sc = qs + qsSize;
            float* o = sc + scSize;
            float* m = o + oSize;
            float* l = m + Align8(vectors);
            float* alpha = l + Align8(vectors);

            // The G heads of a group are adjacent in a row, so a tile row's queries copy as one run.
            for (int i = 0; i < rows; i++)
                ScaleCopy(qs + (long)i * g * d, Q + (long)(s + r0 + i) * QStride + h * g * d, g * d, Scale);
            for (int r = 0; r < vectors; r++)
            {
                m[r] = float.NegativeInfinity;
                l[r] = 0f;
            }
            new Span<float>(o, checked((int)oSize)).Clear();

            float* kt = Kt + (long)h * d * Npad + s;
            float* vRows = V + (long)s * KvStride + h * d;
            int keyEnd = r0 + rows;
            for (int j0 = 0; j0 < keyEnd; j0 += KeyBlock)
            {
                int bc = Math.Min(KeyBlock, keyEnd - j0), cols = RoundUp8(bc);
                Gemm(vectors, cols, d, qs, d, kt + j0, Npad, d, 0, sc, KeyBlock, accumulate: false);
                for (int r = 0; r < vectors; r++)
                {
                    float* row = sc + (long)r * KeyBlock;
                    int valid = Math.Clamp(r0 + r / g + 1 - j0, 0, bc);
                    if (valid == 0)
                    {
                        // A row above this block's keys: contribute nothing and keep its accumulator.
                        new Span<float>(row, cols).Clear();
                        alpha[r] = 1f;
                        continue;
                    }
                    for (int j = valid; j < cols; j++) row[j] = float.NegativeInfinity;
                    float mNew = Math.Max(m[r], RowMax(row, cols));
                    // Online softmax: rescale what was summed under the old max (exp(-inf) = 0 on the first block).
                    alpha[r] = MathF.Exp(m[r] - mNew);
                    l[r] = l[r] * alpha[r] + ExpShiftSum(row, cols, mNew);
                    m[r] = mNew;
                }
                ScaleRows(o, vectors, dp, alpha);
                Gemm(vectors, d, bc, sc, KeyBlock, vRows + (long)j0 * KvStride, KvStride, bc, 0, o, dp, accumulate: true);
            }

            for (int r = 0; r < vectors; r++)
            {
                long row = s + r0 + r / g;
                int head = h * g + r % g;
                ScaleCopy(O + row * QStride + head * d, o + (long)r * dp, d, 1f / l[r]);
                Lse[row * Hq + head] = m[r] + MathF.Log(l[r]);
            }
        }

        // ------------------------------------------------------------ backward pass 1: dQ over query tiles

        private void RunDqTile(int item)
        {
            int seq = Items[3 * item], h = Items[3 * item + 1], block = Items[3 * item + 2];
            int s = Offsets[seq], len = Offsets[seq + 1] - s;
            int r0 = block * TileRows, rows = Math.Min(len, r0 + TileRows) - r0;
            int g = G, d = D, dp = Dp, vectors = rows * g;

            long qsSize = Align8((long)vectors * d), scSize = (long)vectors * KeyBlock, accSize = (long)vectors * dp;
            float* qs = (t_tile ??= new Scratch()).Rent(2 * qsSize + 2 * scSize + accSize + Align8(vectors));
            float* dos = qs + qsSize;
            float* sc = dos + qsSize;
            float* dps = sc + scSize;
            float* acc = dps + scSize;
            float* lse = acc + accSize;
            // Di lands straight in the grouped layout pass 2 reads it in.
            float* di = DiG + (long)h * NGpad + (long)(s + r0) * g;

            for (int i = 0; i < rows; i++)
            {
                long row = s + r0 + i;
                long at = row * QStride + h * g * d;
                ScaleCopy(qs + (long)i * g * d, Q + at, g * d, Scale);
                ScaleCopy(dos + (long)i * g * d, DO + at, g * d, 1f);
                for (int x = 0; x < g; x++)
                {
                    di[i * g + x] = Dot(DO + at + x * d, O + at + x * d, d);
                    lse[i * g + x] = Lse[row * Hq + h * g + x];
                }
            }
            new Span<float>(acc, checked((int)accSize)).Clear();

            float* kt = Kt + (long)h * d * Npad + s;
            float* vt = Vt + (long)h * d * Npad + s;
            float* kRows = K + (long)s * KvStride + h * d;
            int keyEnd = r0 + rows;
            for (int j0 = 0; j0 < keyEnd; j0 += KeyBlock)
            {
                int bc = Math.Min(KeyBlock, keyEnd - j0), cols = RoundUp8(bc);
                Gemm(vectors, cols, d, qs, d, kt + j0, Npad, d, 0, sc, KeyBlock, accumulate: false);
                for (int r = 0; r < vectors; r++)
                {
                    float* row = sc + (long)r * KeyBlock;
                    int valid = Math.Clamp(r0 + r / g + 1 - j0, 0, bc);
                    for (int j = valid; j < cols; j++) row[j] = float.NegativeInfinity;
                    ExpShift(row, cols, lse[r]);
                }
                Gemm(vectors, cols, d, dos, d, vt + j0, Npad, d, 0, dps, KeyBlock, accumulate: false);
                for (int r = 0; r < vectors; r++)
                    SoftmaxGradRow(sc + (long)r * KeyBlock, dps + (long)r * KeyBlock, di[r], cols);
                Gemm(vectors, d, bc, sc, KeyBlock, kRows + (long)j0 * KvStride, KvStride, bc, 0, acc, dp, accumulate: true);
            }

            for (int r = 0; r < vectors; r++)
            {
                long row = s + r0 + r / g;
                ScaleCopy(DQ + row * QStride + (h * g + r % g) * d, acc + (long)r * dp, d, Scale);
            }
        }

        // ------------------------------------------------------------ backward pass 2: dK, dV over key blocks

        private void RunDkvBlock(int item)
        {
            int seq = Items[3 * item], h = Items[3 * item + 1], block = Items[3 * item + 2];
            int s = Offsets[seq], len = Offsets[seq + 1] - s;
            int j0 = block * KeyRows, bk = Math.Min(len, j0 + KeyRows) - j0;
            int g = G, d = D, dp = Dp;
            int tileRows = TileRows, ldr = RoundUp8(tileRows * g);

            long stSize = (long)bk * ldr, accSize = (long)bk * dp;
            float* st = (t_tile ??= new Scratch()).Rent(2 * stSize + 2 * accSize);
            float* dst = st + stSize;
            float* dka = dst + stSize;
            float* dva = dka + accSize;
            new Span<float>(dka, checked((int)(2 * accSize))).Clear();

            float* kRows = K + (long)(s + j0) * KvStride + h * d;
            float* vRows = V + (long)(s + j0) * KvStride + h * d;
            float* qt = Qt + (long)h * d * NGpad;
            float* dot = DOt + (long)h * d * NGpad;
            float* lseG = LseG + (long)h * NGpad;
            float* diG = DiG + (long)h * NGpad;
            // Rows before the block's first key see none of it.
            for (int i0 = j0; i0 < len; i0 += tileRows)
            {
                int i1 = Math.Min(len, i0 + tileRows), vectors = (i1 - i0) * g, cols = RoundUp8(vectors);
                // Near the diagonal only the block's first keys are visible to this tile; skip the rest.
                int keys = Math.Min(bk, i1 - j0);
                long col0 = (long)(s + i0) * g;
                // Transposed scores S^T[key, query vector], so rows are keys and dK/dV rows have one owner.
                Gemm(keys, cols, d, kRows, KvStride, qt + col0, NGpad, d, 0, st, ldr, accumulate: false);
                for (int j = 0; j < keys; j++)
                {
                    float* row = st + (long)j * ldr;
                    ExpShiftVector(row, lseG + col0, cols);
                    // Causal mask: query rows above key j0 + j are the leading (j0 + j - i0) * G columns.
                    int hidden = Math.Min(cols, (j0 + j - i0) * g);
                    if (hidden > 0) new Span<float>(row, hidden).Clear();
                }
                Gemm(keys, cols, d, vRows, KvStride, dot + col0, NGpad, d, 0, dst, ldr, accumulate: false);
                for (int j = 0; j < keys; j++)
                    SoftmaxGradVector(st + (long)j * ldr, dst + (long)j * ldr, diG + col0, cols);
                // B rows are (row, head-in-group) pairs: G heads D apart, rows QStride apart.
                long at = (long)(s + i0) * QStride + h * g * d;
                Gemm(keys, d, vectors, st, ldr, DO + at, d, g, QStride, dva, dp, accumulate: true);
                Gemm(keys, d, vectors, dst, ldr, Q + at, d, g, QStride, dka, dp, accumulate: true);
            }

            for (int j = 0; j < bk; j++)
            {
                long at = (long)(s + j0 + j) * KvStride + h * d;
                ScaleCopy(DK + at, dka + (long)j * dp, d, Scale);
                ScaleCopy(DV + at, dva + (long)j * dp, d, 1f);
            }
        }

        // ------------------------------------------------------------ decode

        private void RunDecodeItem(int item)
        {
            int b = item / Hkv, h = item % Hkv;
            int length = Lengths[b], g = G, d = D, dp = Dp, ldp = RoundUp8(length);
            long cacheRow = (long)Slots[b] * MaxLength;
            float* kRows = KCache + cacheRow * KvStride + h * d;
            float* vRows = VCache + cacheRow * KvStride + h * d;

            long qsSize = (long)g * dp, scSize = (long)g * ldp;
            float* qs = (t_tile ??= new Scratch()).Rent(2 * qsSize + scSize + Align8(g));
            float* o = qs + qsSize;
            float* sc = o + qsSize;
            float* l = sc + scSize;

            // Zero padding to a whole vector lets the score loop read full query vectors.
            for (int x = 0; x < g; x++)
            {
                float* dst = qs + (long)x * dp;
                ScaleCopy(dst, Q + (long)b * QStride + (h * g + x) * d, d, Scale);
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
            Gemm(g, d, length, sc, ldp, vRows, KvStride, length, 0, o, dp, accumulate: false);
            for (int x = 0; x < g; x++)
                ScaleCopy(O + (long)b * QStride + (h * g + x) * d, o + (long)x * dp, d, 1f / l[x]);
        }
    }

    // ---------------------------------------------------------------- scratch

    /// <summary>A pinned, 32-byte aligned buffer that only grows.</summary>
    private sealed class Scratch
    {
        private float[] _buffer = [];

        public float* Rent(long floats)
        {
            if (_buffer.Length < floats + 8)
            {
                // Some slack so a slowly growing shape does not reallocate every call.
                long size = floats + floats / 8 + 16;
                _buffer = GC.AllocateUninitializedArray<float>(checked((int)size), pinned: true);
            }
            nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_buffer));
            return (float*)((p + 31) & ~(nint)31);
        }
    }

    private static int RoundUp8(int x) => (x + 7) & ~7;

    private static long Align8(long x) => (x + 7) & ~7L;

    // ---------------------------------------------------------------- GEMM

    /// <summary>
    /// C[M, N] = (accumulate ? C : 0) + A[M, K] B[K, N]. A(m, k) = a[m * lda + k]. Row k of B starts at
    /// b + (k / kGroup) * ldbOuter + (k % kGroup) * ldbInner, which lets pass 2 read the (row, head) pairs
    /// of a query tile straight from the [N, Hq*D] tensors. The SIMD path works in whole vectors of 8
    /// columns: the last partial vector of B is read under a mask (B rows may end a tensor), and C rows
    /// must have room for RoundUp8(N) floats (the overhang receives zeros or is left as it was).
    /// </summary>
    internal static void Gemm(int m, int n, int k, float* a, int lda, float* b, int ldbInner, int kGroup, long ldbOuter,
        float* c, int ldc, bool accumulate)
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0)
        {
            if (!accumulate)
                for (int i = 0; i < m; i++) new Span<float>(c + (long)i * ldc, n).Clear();
            return;
        }
        if (!Simd)
        {
            GemmScalar(m, n, k, a, lda, b, ldbInner, kGroup, ldbOuter, c, ldc, accumulate);
            return;
        }
        int full = n & ~7, n0 = 0;
        for (; n0 + 16 <= full; n0 += 16)
        {
            int i = 0;
            // Six-row tiles, but end on four-row ones rather than leave two or three single rows.
            for (; m - i >= 6 && m - i - 6 is not (2 or 3); i += 6)
                Kernel6x16(k, a + (long)i * lda, lda, b + n0, ldbInner, kGroup, ldbOuter, c + (long)i * ldc + n0, ldc, accumulate);
            for (; i + 4 <= m; i += 4)
                Kernel4x16(k, a + (long)i * lda, lda, b + n0, ldbInner, kGroup, ldbOuter, c + (long)i * ldc + n0, ldc, accumulate);
            for (; i < m; i++)
                Kernel1x16(k, a + (long)i * lda, b + n0, ldbInner, kGroup, ldbOuter, c + (long)i * ldc + n0, accumulate);
        }
        if (n0 < full)
        {
            Gemm8<FullLoad>(m, k, a, lda, b + n0, ldbInner, kGroup, ldbOuter, c + n0, ldc, accumulate, default);
            n0 += 8;
        }
        if (n0 < n)
        {
            var mask = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(n - n0)).AsSingle();
            Gemm8<MaskedLoad>(m, k, a, lda, b + n0, ldbInner, kGroup, ldbOuter, c + n0, ldc, accumulate, mask);
        }
    }

    private static void GemmScalar(int m, int n, int k, float* a, int lda, float* b, int ldbInner, int kGroup, long ldbOuter,
        float* c, int ldc, bool accumulate)
    {
        for (int i = 0; i < m; i++)
        {
            float* ci = c + (long)i * ldc;
            if (!accumulate) new Span<float>(ci, n).Clear();
            float* ai = a + (long)i * lda;
            for (int x = 0; x < k; x++)
            {
                float ax = ai[x];
                float* bx = b + x / kGroup * ldbOuter + (long)(x % kGroup) * ldbInner;
                for (int j = 0; j < n; j++) ci[j] += ax * bx[j];
            }
        }
    }

    private static void Gemm8<TLoad>(int m, int k, float* a, int lda, float* b, int ldbInner, int kGroup, long ldbOuter,
        float* c, int ldc, bool accumulate, Vector256<float> mask) where TLoad : struct, ILoad
    {
        int i = 0;
        // One vector of columns: eight rows give the eight independent FMA chains two pipes of latency 4 need.
        for (; i + 8 <= m; i += 8)
            Kernel8x8<TLoad>(k, a + (long)i * lda, lda, b, ldbInner, kGroup, ldbOuter, c + (long)i * ldc, ldc, accumulate, mask);
        for (; i + 4 <= m; i += 4)
            Kernel4x8<TLoad>(k, a + (long)i * lda, lda, b, ldbInner, kGroup, ldbOuter, c + (long)i * ldc, ldc, accumulate, mask);
        for (; i < m; i++)
            Kernel1x8<TLoad>(k, a + (long)i * lda, b, ldbInner, kGroup, ldbOuter, c + (long)i * ldc, accumulate, mask);
    }

    /// <summary>Picks a full or a masked load at JIT time (struct type arguments are specialised).</summary>
    private interface ILoad
    {
        static abstract Vector256<float> Load(float* p, Vector256<float> mask);
    }

    private struct FullLoad : ILoad
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(float* p, Vector256<float> mask) => Avx.LoadVector256(p);
    }

    private struct MaskedLoad : ILoad
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(float* p, Vector256<float> mask) => Avx.MaskLoad(p, mask);
    }

    // Register tiles: 4 rows × 16 columns keeps 8 accumulators, 2 B vectors and a broadcast in the 16 ymm
    // registers, and does 8 FMAs per 6 loads, enough to keep both FMA pipes busy.

    private static void Kernel6x16(int k, float* a, int lda, float* b, int ldbInner, int kGroup, long ldbOuter,
        float* c, int ldc, bool accumulate)
    {
        float* c0 = c, c1 = c + ldc, c2 = c1 + ldc, c3 = c2 + ldc, c4 = c3 + ldc, c5 = c4 + ldc;
        Vector256<float> x00, x01, x10, x11, x20, x21, x30, x31, x40, x41, x50, x51;
        if (accumulate)
        {
            x00 = Avx.LoadVector256(c0); x01 = Avx.LoadVector256(c0 + 8);
            x10 = Avx.LoadVector256(c1); x11 = Avx.LoadVector256(c1 + 8);
            x20 = Avx.LoadVector256(c2); x21 = Avx.LoadVector256(c2 + 8);
            x30 = Avx.LoadVector256(c3); x31 = Avx.LoadVector256(c3 + 8);
            x40 = Avx.LoadVector256(c4); x41 = Avx.LoadVector256(c4 + 8);
            x50 = Avx.LoadVector256(c5); x51 = Avx.LoadVector256(c5 + 8);
        }
        else
        {
            x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = x40 = x41 = x50 = x51 = Vector256<float>.Zero;
        }
        float* a0 = a, a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda, a4 = a3 + lda, a5 = a4 + lda;
        float* outer = b;
        for (int k0 = 0; k0 < k; k0 += kGroup, outer += ldbOuter)
        {
            int end = Math.Min(k, k0 + kGroup);
            float* bp = outer;
            for (int x = k0; x < end; x++, bp += ldbInner)
            {
                var b0 = Avx.LoadVector256(bp);
                var b1 = Avx.LoadVector256(bp + 8);
                var s = Vector256.Create(a0[x]);
                x00 = Fma.MultiplyAdd(s, b0, x00); x01 = Fma.MultiplyAdd(s, b1, x01);
                s = Vector256.Create(a1[x]);
                x10 = Fma.MultiplyAdd(s, b0, x10); x11 = Fma.MultiplyAdd(s, b1, x11);
                s = Vector256.Create(a2[x]);
                x20 = Fma.MultiplyAdd(s, b0, x20); x21 = Fma.MultiplyAdd(s, b1, x21);
                s = Vector256.Create(a3[x]);
                x30 = Fma.MultiplyAdd(s, b0, x30); x31 = Fma.MultiplyAdd(s, b1, x31);
                s = Vector256.Create(a4[x]);
                x40 = Fma.MultiplyAdd(s, b0, x40); x41 = Fma.MultiplyAdd(s, b1, x41);
                s = Vector256.Create(a5[x]);
                x50 = Fma.MultiplyAdd(s, b0, x50); x51 = Fma.MultiplyAdd(s, b1, x51);
            }
        }
        Avx.Store(c0, x00); Avx.Store(c0 + 8, x01);
        Avx.Store(c1, x10); Avx.Store(c1 + 8, x11);
        Avx.Store(c2, x20); Avx.Store(c2 + 8, x21);
        Avx.Store(c3, x30); Avx.Store(c3 + 8, x31);
        Avx.Store(c4, x40); Avx.Store(c4 + 8, x41);
        Avx.Store(c5, x50); Avx.Store(c5 + 8, x51);
    }

    private static void Kernel4x16(int k, float* a, int lda, float* b, int ldbInner, int kGroup, long ldbOuter,
        float* c, int ldc, bool accumulate)
    {
        float* c0 = c, c1 = c + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
        Vector256<float> x00, x01, x10, x11, x20, x21, x30, x31;
        if (accumulate)
        {
            x00 = Avx.LoadVector256(c0); x01 = Avx.LoadVector256(c0 + 8);
            x10 = Avx.LoadVector256(c1); x11 = Avx.LoadVector256(c1 + 8);
            x20 = Avx.LoadVector256(c2); x21 = Avx.LoadVector256(c2 + 8);
            x30 = Avx.LoadVector256(c3); x31 = Avx.LoadVector256(c3 + 8);
        }
        else
        {
            x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = Vector256<float>.Zero;
        }
        float* a0 = a, a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda;
        float* outer = b;
        for (int k0 = 0; k0 < k; k0 += kGroup, outer += ldbOuter)
        {
            int end = Math.Min(k, k0 + kGroup);
            float* bp = outer;
            for (int x = k0; x < end; x++, bp += ldbInner)
            {
                var b0 = Avx.LoadVector256(bp);
                var b1 = Avx.LoadVector256(bp + 8);
                var s = Vector256.Create(a0[x]);
                x00 = Fma.MultiplyAdd(s, b0, x00); x01 = Fma.MultiplyAdd(s, b1, x01);
                s = Vector256.Create(a1[x]);
                x10 = Fma.MultiplyAdd(s, b0, x10); x11 = Fma.MultiplyAdd(s, b1, x11);
                s = Vector256.Create(a2[x]);
                x20 = Fma.MultiplyAdd(s, b0, x20); x21 = Fma.MultiplyAdd(s, b1, x21);
                s = Vector256.Create(a3[x]);
                x30 = Fma.MultiplyAdd(s, b0, x30); x31 = Fma.MultiplyAdd(s, b1, x31);
            }
        }
        Avx.Store(c0, x00); Avx.Store(c0 + 8, x01);
        Avx.Store(c1, x10); Avx.Store(c1 + 8, x11);
        Avx.Store(c2, x20); Avx.Store(c2 + 8, x21);
        Avx.Store(c3, x30); Avx.Store(c3 + 8, x31);
    }

    private static void Kernel1x16(int k, float* a, float* b, int ldbInner, int kGroup, long ldbOuter, float* c, bool accumulate)
    {
        var x0 = accumulate ? Avx.LoadVector256(c) : Vector256<float>.Zero;
        var x1 = accumulate ? Avx.LoadVector256(c + 8) : Vector256<float>.Zero;
        float* outer = b;
        for (int k0 = 0; k0 < k; k0 += kGroup, outer += ldbOuter)
        {
            int end = Math.Min(k, k0 + kGroup);
            float* bp = outer;
            for (int x = k0; x < end; x++, bp += ldbInner)
            {
                var s = Vector256.Create(a[x]);
                x0 = Fma.MultiplyAdd(s, Avx.LoadVector256(bp), x0);
                x1 = Fma.MultiplyAdd(s, Avx.LoadVector256(bp + 8), x1);
            }
        }
        Avx.Store(c, x0);
        Avx.Store(c + 8, x1);
    }

    private static void Kernel8x8<TLoad>(int k, float* a, int lda, float* b, int ldbInner, int kGroup, long ldbOuter,
        float* c, int ldc, bool accumulate, Vector256<float> mask) where TLoad : struct, ILoad
    {
        Vector256<float> x0, x1, x2, x3, x4, x5, x6, x7;
        if (accumulate)
        {
            x0 = Avx.LoadVector256(c); x1 = Avx.LoadVector256(c + ldc);
            x2 = Avx.LoadVector256(c + 2 * ldc); x3 = Avx.LoadVector256(c + 3 * ldc);
            x4 = Avx.LoadVector256(c + 4 * ldc); x5 = Avx.LoadVector256(c + 5 * ldc);
            x6 = Avx.LoadVector256(c + 6 * ldc); x7 = Avx.LoadVector256(c + 7 * ldc);
        }
        else
        {
            x0 = x1 = x2 = x3 = x4 = x5 = x6 = x7 = Vector256<float>.Zero;
        }
        float* a0 = a, a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda, a4 = a3 + lda, a5 = a4 + lda, a6 = a5 + lda, a7 = a6 + lda;
        float* outer = b;
        for (int k0 = 0; k0 < k; k0 += kGroup, outer += ldbOuter)
        {
            int end = Math.Min(k, k0 + kGroup);
            float* bp = outer;
            for (int x = k0; x < end; x++, bp += ldbInner)
            {
                var bv = TLoad.Load(bp, mask);
                x0 = Fma.MultiplyAdd(Vector256.Create(a0[x]), bv, x0);
                x1 = Fma.MultiplyAdd(Vector256.Create(a1[x]), bv, x1);
                x2 = Fma.MultiplyAdd(Vector256.Create(a2[x]), bv, x2);
                x3 = Fma.MultiplyAdd(Vector256.Create(a3[x]), bv, x3);
                x4 = Fma.MultiplyAdd(Vector256.Create(a4[x]), bv, x4);
                x5 = Fma.MultiplyAdd(Vector256.Create(a5[x]), bv, x5);
                x6 = Fma.MultiplyAdd(Vector256.Create(a6[x]), bv, x6);
                x7 = Fma.MultiplyAdd(Vector256.Create(a7[x]), bv, x7);
            }
        }
        Avx.Store(c, x0); Avx.Store(c + ldc, x1); Avx.Store(c + 2 * ldc, x2); Avx.Store(c + 3 * ldc, x3);
        Avx.Store(c + 4 * ldc, x4); Avx.Store(c + 5 * ldc, x5); Avx.Store(c + 6 * ldc, x6); Avx.Store(c + 7 * ldc, x7);
    }

    private static void Kernel4x8<TLoad>(int k, float* a, int lda, float* b, int ldbInner, int kGroup, long ldbOuter,
        float* c, int ldc, bool accumulate, Vector256<float> mask) where TLoad : struct, ILoad
    {
        float* c0 = c, c1 = c + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
        Vector256<float> x0, x1, x2, x3;
        if (accumulate)
        {
            x0 = Avx.LoadVector256(c0); x1 = Avx.LoadVector256(c1);
            x2 = Avx.LoadVector256(c2); x3 = Avx.LoadVector256(c3);
        }
        else
        {
            x0 = x1 = x2 = x3 = Vector256<float>.Zero;
        }
        float* a0 = a, a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda;
        float* outer = b;
        for (int k0 = 0; k0 < k; k0 += kGroup, outer += ldbOuter)
        {
            int end = Math.Min(k, k0 + kGroup);
            float* bp = outer;
            for (int x = k0; x < end; x++, bp += ldbInner)
            {
                var bv = TLoad.Load(bp, mask);
                x0 = Fma.MultiplyAdd(Vector256.Create(a0[x]), bv, x0);
                x1 = Fma.MultiplyAdd(Vector256.Create(a1[x]), bv, x1);
                x2 = Fma.MultiplyAdd(Vector256.Create(a2[x]), bv, x2);
                x3 = Fma.MultiplyAdd(Vector256.Create(a3[x]), bv, x3);
            }
        }
        Avx.Store(c0, x0); Avx.Store(c1, x1); Avx.Store(c2, x2); Avx.Store(c3, x3);
    }

    private static void Kernel1x8<TLoad>(int k, float* a, float* b, int ldbInner, int kGroup, long ldbOuter,
        float* c, bool accumulate, Vector256<float> mask) where TLoad : struct, ILoad
    {
        var x0 = accumulate ? Avx.LoadVector256(c) : Vector256<float>.Zero;
        float* outer = b;
        for (int k0 = 0; k0 < k; k0 += kGroup, outer += ldbOuter)
        {
            int end = Math.Min(k, k0 + kGroup);
            float* bp = outer;
            for (int x = k0; x < end; x++, bp += ldbInner)
                x0 = Fma.MultiplyAdd(Vector256.Create(a[x]), TLoad.Load(bp, mask), x0);
        }
        Avx.Store(c, x0);
    }

    // ---------------------------------------------------------------- decode scores

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

    // ---------------------------------------------------------------- row helpers (SIMD path: n % 8 == 0)

    private static float RowMax(float* x, int n)
    {
        if (Simd)
        {
            var acc = Vector256.Create(float.NegativeInfinity);
            for (int i = 0; i < n; i += 8) acc = Avx.Max(acc, Avx.LoadVector256(x + i));
            var m = Sse.Max(acc.GetLower(), acc.GetUpper());
            m = Sse.Max(m, Sse.Shuffle(m, m, 0b01_00_11_10));
            m = Sse.Max(m, Sse.Shuffle(m, m, 0b10_11_00_01));
            return m.ToScalar();
        }
        float r = float.NegativeInfinity;
        for (int i = 0; i < n; i++) r = MathF.Max(r, x[i]);
        return r;
    }

    /// <summary>x = exp(x - shift) in place; returns the sum.</summary>
    private static float ExpShiftSum(float* x, int n, float shift)
    {
        if (Simd)
        {
            var sv = Vector256.Create(shift);
            var sum = Vector256<float>.Zero;
            for (int i = 0; i < n; i += 8)
            {
                var e = Exp(Avx.Subtract(Avx.LoadVector256(x + i), sv));
                Avx.Store(x + i, e);
                sum = Avx.Add(sum, e);
            }
            return Vector256.Sum(sum);
        }
        float total = 0f;
        for (int i = 0; i < n; i++) total += x[i] = MathF.Exp(x[i] - shift);
        return total;
    }

    /// <summary>x = exp(x - shift) in place.</summary>
    private static void ExpShift(float* x, int n, float shift)
    {
        if (Simd)
        {
            var sv = Vector256.Create(shift);
            for (int i = 0; i < n; i += 8) Avx.Store(x + i, Exp(Avx.Subtract(Avx.LoadVector256(x + i), sv)));
            return;
        }
        for (int i = 0; i < n; i++) x[i] = MathF.Exp(x[i] - shift);
    }

    /// <summary>x[i] = exp(x[i] - shift[i]) in place (pass 2: one log-sum-exp per column).</summary>
    private static void ExpShiftVector(float* x, float* shift, int n)
    {
        if (Simd)
        {
            for (int i = 0; i < n; i += 8)
                Avx.Store(x + i, Exp(Avx.Subtract(Avx.LoadVector256(x + i), Avx.LoadVector256(shift + i))));
            return;
        }
        for (int i = 0; i < n; i++) x[i] = MathF.Exp(x[i] - shift[i]);
    }

    /// <summary>p = p (dP - di): dS of a row, written over P, which pass 1 no longer needs.</summary>
    private static void SoftmaxGradRow(float* p, float* dP, float di, int n)
    {
        if (Simd)
        {
            var dv = Vector256.Create(di);
            for (int i = 0; i < n; i += 8)
                Avx.Store(p + i, Avx.Multiply(Avx.LoadVector256(p + i), Avx.Subtract(Avx.LoadVector256(dP + i), dv)));
            return;
        }
        for (int i = 0; i < n; i++) p[i] *= dP[i] - di;
    }

    /// <summary>dP = p (dP - di) per column: dS written over dP, since pass 2 still needs P for dV.</summary>
    private static void SoftmaxGradVector(float* p, float* dP, float* di, int n)
    {
        if (Simd)
        {
            for (int i = 0; i < n; i += 8)
                Avx.Store(dP + i, Avx.Multiply(Avx.LoadVector256(p + i), Avx.Subtract(Avx.LoadVector256(dP + i), Avx.LoadVector256(di + i))));
            return;
        }
        for (int i = 0; i < n; i++) dP[i] = p[i] * (dP[i] - di[i]);
    }

    /// <summary>Row r of x (row length ld) *= factor[r]; rows whose factor is 1 are skipped.</summary>
    private static void ScaleRows(float* x, int rows, int ld, float* factor)
    {
        for (int r = 0; r < rows; r++)
        {
            float f = factor[r];
            if (f != 1f) ScaleCopy(x + (long)r * ld, x + (long)r * ld, ld, f);
        }
    }

    /// <summary>dst = scale * src (may alias).</summary>
    private static void ScaleCopy(float* dst, float* src, int n, float scale)
    {
        int i = 0;
        if (Simd)
        {
            var sv = Vector256.Create(scale);
            for (; i + 8 <= n; i += 8) Avx.Store(dst + i, Avx.Multiply(Avx.LoadVector256(src + i), sv));
        }
        for (; i < n; i++) dst[i] = scale * src[i];
    }

    private static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float sum = 0f;
        if (Simd)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8) acc = Fma.MultiplyAdd(Avx.LoadVector256(a + i), Avx.LoadVector256(b + i), acc);
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>
    /// exp for arguments at most about 0 (scores minus a max or a log-sum-exp). Cephes expf: x = n ln2 + r
    /// with |r| ≤ ln2/2, e^r from a degree-6 polynomial (about 1 ulp), 2^n added to the exponent bits.
    /// Below -86.5 the result is flushed to 0: that keeps 2^n normal, and turns the -inf of masked
    /// scores into exact zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Exp(Vector256<float> x)
    {
        var keep = Avx.CompareGreaterThanOrEqual(x, Vector256.Create(-86.5f));
        var n = Avx.ConvertToVector256Int32(Avx.Multiply(x, Vector256.Create(1.44269504088896341f)));
        var nf = Avx.ConvertToVector256Single(n);
        // ln2 split in two so n * ln2 is exact in the first subtraction.
        var r = Fma.MultiplyAddNegated(nf, Vector256.Create(0.693359375f), x);
        r = Fma.MultiplyAddNegated(nf, Vector256.Create(-2.12194440e-4f), r);
        var p = Fma.MultiplyAdd(Vector256.Create(1.9875691500e-4f), r, Vector256.Create(1.3981999507e-3f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(8.3334519073e-3f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(4.1665795894e-2f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(1.6666665459e-1f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(5.0000001201e-1f));
        p = Fma.MultiplyAdd(p, Avx.Multiply(r, r), r);
        p = Avx.Add(p, Vector256.Create(1f));
        var scaled = Avx2.Add(p.AsInt32(), Avx2.ShiftLeftLogical(n, 23)).AsSingle();
        return Avx.And(scaled, keep);
    }
}
