using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

/// <summary>
/// Fused causal grouped-query attention for the Cpu backend: FlashAttention-2 tiling in fp32, so the
/// [S, S] score matrix never exists and each K/V row is loaded once per tile of query rows.
/// </summary>
/// <remarks>
/// <para>A tile is the G = Hq / Hkv query heads of one kv group over a block of query rows (about 64
/// query vectors): the G heads share every K/V row, so grouping them multiplies the reuse of each
/// loaded key by G. Every product is one small GEMM (<see cref="Gemm"/>) whose B operand is vectorised
/// along the output columns; scores contract over the head dimension, so K (and V, for dP) are first
/// transposed once per call into a per-caller pack. That is O(N·D) work against O(S²·D) attention.</para>
/// <para>The backward runs as two passes so that every output row has exactly one writer: deterministic
/// for any fixed thread count, with no atomics and no per-thread partial buffers. Pass 1 walks query
/// tiles, recomputes P and accumulates dQ; pass 2 walks key blocks, recomputes P for the query tiles at
/// or below them and accumulates dKᵀ and dVᵀ (transposed, so the GEMM streams P and dS rows). Computing
/// P twice costs 7 instead of 5 GEMM-equivalents, but memory stays O(N) and both passes scale with the
/// threads even for one long sequence and one kv head.</para>
/// <para>Work items are (sequence, kv head, block) triples listed most expensive first (causal cost grows
/// along a sequence) and claimed dynamically by the pool; each writes only its own rows, so which
/// thread runs it does not change a bit of the result. Tile sizes shrink with more threads (to keep
/// every thread busy), but every output element still sums the same terms in the same order and a
/// smaller tile only adds exact zeros, so in practice results also match across thread counts.</para>
/// </remarks>
internal static unsafe class CpuAttention
{
    /// <summary>Keys per score tile (forward, dQ pass), and key rows per dK/dV item before shrinking.</summary>
    private const int KeyBlock = 64;

    /// <summary>
    /// Query vectors (rows × heads of a group) per tile: a 64 × 64 score tile is 16 KiB, which stays in
    /// L1 beside the key panel it is multiplied with.
    /// </summary>
    private const int TileVectors = 64;

    /// <summary>Tiles are not shrunk below this many query vectors for load balance; GEMM efficiency drops fast below it.</summary>
    private const int MinTileVectors = 16;

    /// <summary>Rows per packing work item.</summary>
    private const int PackRows = 128;

    /// <summary>Below this many multiply-adds a call runs on the calling thread: the fork would cost more than it saves.</summary>
    private const long InlineWork = 1 << 15;

    /// <summary>
    /// Scores are kept in base 2 (queries are pre-scaled by scale · log2 e), so softmax exponentials are
    /// 2^x: the range reduction is one exact subtraction instead of a two-constant Cody-Waite step.
    /// </summary>
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2 = 0.693147180559945309f;

    private static bool Simd => Fma.IsSupported && Avx2.IsSupported && Vector256.IsHardwareAccelerated;

    /// <summary>Per worker thread: tile scratch, reused across calls so the steady state allocates nothing.</summary>
    [ThreadStatic] private static Scratch? t_tile;

    /// <summary>Per calling thread: the packs of one call, shared read-only by its workers.</summary>
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
        /// <summary>Transposed K and V, [Hkv, D, Npad]; Di = dO·O per row and head, [N, Hq].</summary>
        public float* Kt, Vt, Di;
        public float* KCache, VCache;
        public int* Slots, Lengths;
        public int MaxLength;
        public int[] Offsets = [];
        public int Hq, Hkv, D, Dp, G, QStride, KvStride, N;
        /// <summary>Row length of the transposed packs: N plus room for a tile's last vector to overhang.</summary>
        public int Npad;
        public float Scale;
        /// <summary>Scale · log2 e: multiplies queries so the score GEMM yields base-2 scores.</summary>
        public float Scale2;
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
            Scale2 = scale * Log2E;
        }

        public void Init(int[] offsets, int numHeads, int numKvHeads, int headDim, float scale)
        {
            InitHeads(numHeads, numKvHeads, headDim, scale);
            Offsets = offsets;
            N = offsets[^1];
            Npad = RoundUp8(N) + 8;
            PackChunks = (N + PackRows - 1) / PackRows;
        }

        /// <summary>Drops the references of the finished call so the job does not keep them alive.</summary>
        public void Release()
        {
            Offsets = [];
            Q = K = V = O = Lse = DO = DQ = DK = DV = null;
            Kt = Vt = Di = KCache = VCache = null;
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

        /// <summary>Query-row tiles for the forward and both backward passes; items for the forward and pass 1.</summary>
        public void PlanQueryTiles()
        {
            int rows = Math.Max(1, TileVectors / G);
            // Short sequences or few kv heads leave too few tiles to balance: trade GEMM size for items.
            int wanted = 4 * CpuParallel.ThreadCount;
            while (rows > 1 && rows / 2 * G >= MinTileVectors && CountItems(rows) < wanted) rows /= 2;
            TileRows = rows;
            BuildItems(rows, costFromEnd: false);
        }

        /// <summary>Key-row blocks for pass 2.</summary>
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
            PackTransposed(K + h * D, KvStride, n0, n1, end, D, Kt + (long)h * D * Npad, Npad);
        }

        private void RunPackBackward(int item)
        {
            int h = item / PackChunks, chunk = item % PackChunks;
            int n0 = chunk * PackRows, n1 = Math.Min(N, n0 + PackRows), end = chunk == PackChunks - 1 ? Npad : n1;
            PackTransposed(K + h * D, KvStride, n0, n1, end, D, Kt + (long)h * D * Npad, Npad);
            PackTransposed(V + h * D, KvStride, n0, n1, end, D, Vt + (long)h * D * Npad, Npad);
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

        // ------------------------------------------------------------ forward

        private void RunForwardTile(int item)
        {
            int seq = Items[3 * item], h = Items[3 * item + 1], block = Items[3 * item + 2];
            int s = Offsets[seq], len = Offsets[seq + 1] - s;
            int r0 = block * TileRows, rows = Math.Min(len, r0 + TileRows) - r0;
            int g = G, d = D, dp = Dp, vectors = rows * g;

            long qsSize = Align8((long)vectors * d), scSize = (long)vectors * KeyBlock, oSize = (long)vectors * dp;
            int rowPad = RoundUp8(vectors);
            float* qs = (t_tile ??= new Scratch()).Rent(qsSize + scSize + oSize + 4L * rowPad);
            float* sc = qs + qsSize;
            float* o = sc + scSize;
            float* m = o + oSize;
            float* mNew = m + rowPad;
            float* l = mNew + rowPad;
            float* alpha = l + rowPad;

            LoadQueryTile(s + r0, rows, h, qs, null);
            for (int r = 0; r < rowPad; r++)
            {
                // Padding rows stay at 0 so the vectorised rescale below reads finite numbers.
                m[r] = mNew[r] = r < vectors ? float.NegativeInfinity : 0f;
                l[r] = 0f;
            }
            new Span<float>(o, checked((int)oSize)).Clear();

            float* kt = Kt + (long)h * d * Npad + s;
            float* vRows = V + (long)s * KvStride + h * d;
            int keyEnd = r0 + rows;
            for (int j0 = 0; j0 < keyEnd; j0 += KeyBlock)
            {
                int bc = Math.Min(KeyBlock, keyEnd - j0), cols = RoundUp8(bc);
                Gemm(vectors, cols, d, qs, d, 1, kt + j0, Npad, sc, KeyBlock, accumulate: false);
                for (int r = 0; r < vectors; r++)
                {
                    float* row = sc + (long)r * KeyBlock;
                    int valid = Math.Clamp(r0 + r / g + 1 - j0, 0, bc);
                    for (int j = valid; j < cols; j++) row[j] = float.NegativeInfinity;
                    // Every row sees key 0 in the first block, so a row with nothing visible here has a finite max.
                    mNew[r] = valid == 0 ? m[r] : Math.Max(m[r], RowMax(row, cols));
                }
                // Online softmax: what was summed under the old max is rescaled by 2^(m - mNew), which is
                // 0 on a row's first block (m = -inf) and 1 for rows this block leaves alone.
                ExpDifference(m, mNew, alpha, rowPad);
                for (int r = 0; r < vectors; r++)
                {
                    l[r] = l[r] * alpha[r] + ExpShiftSum(sc + (long)r * KeyBlock, cols, mNew[r]);
                    m[r] = mNew[r];
                }
                ScaleRows(o, vectors, dp, alpha);
                Gemm(vectors, d, bc, sc, KeyBlock, 1, vRows + (long)j0 * KvStride, KvStride, o, dp, accumulate: true);
            }

            for (int r = 0; r < vectors; r++)
            {
                long row = s + r0 + r / g;
                int head = h * g + r % g;
                ScaleCopy(O + row * QStride + head * d, o + (long)r * dp, d, 1f / l[r]);
                Lse[row * Hq + head] = m[r] * Ln2 + MathF.Log(l[r]);
            }
        }

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
        /// The backward's shared inner step for one (query tile, key block) pair: S = qs Kt over the block's
        /// keys, P = 2^(S - lse) in base 2 under the causal mask (row r sees keys j &lt; firstRowKeys + r / G),
        /// dP = dos Vt, and dS = P (dP - Di), written into dps. P stays in sc. Columns from keys up to the
        /// next multiple of 8 come out as zeros in both.
        /// </summary>
        private void SoftmaxBackwardTile(int vectors, int keys, float* qs, float* dos, float* kt, float* vt, float* lse,
            float* di, int firstRowKeys, float* sc, float* dps)
        {
            int g = G, d = D, cols = RoundUp8(keys);
            Gemm(vectors, cols, d, qs, d, 1, kt, Npad, sc, KeyBlock, accumulate: false);
            for (int r = 0; r < vectors; r++)
            {
                float* row = sc + (long)r * KeyBlock;
                int valid = Math.Clamp(firstRowKeys + r / g, 0, keys);
                for (int j = valid; j < cols; j++) row[j] = float.NegativeInfinity;
                ExpShift(row, cols, lse[r]);
            }
            Gemm(vectors, cols, d, dos, d, 1, vt, Npad, dps, KeyBlock, accumulate: false);
            for (int r = 0; r < vectors; r++)
                SoftmaxGrad(sc + (long)r * KeyBlock, dps + (long)r * KeyBlock, di[r], cols);
        }

        // ------------------------------------------------------------ backward pass 1: dQ over query tiles

        private void RunDqTile(int item)
        {
            int seq = Items[3 * item], h = Items[3 * item + 1], block = Items[3 * item + 2];
            int s = Offsets[seq], len = Offsets[seq + 1] - s;
            int r0 = block * TileRows, rows = Math.Min(len, r0 + TileRows) - r0;
            int g = G, d = D, dp = Dp, vectors = rows * g;

            long qsSize = Align8((long)vectors * d), scSize = (long)vectors * KeyBlock, accSize = (long)vectors * dp;
            float* qs = (t_tile ??= new Scratch()).Rent(2 * qsSize + 2 * scSize + accSize + 2 * Align8(vectors));
            float* dos = qs + qsSize;
            float* sc = dos + qsSize;
            float* dps = sc + scSize;
            float* acc = dps + scSize;
            float* lse = acc + accSize;
            float* di = lse + Align8(vectors);

            LoadQueryTile(s + r0, rows, h, qs, dos);
            for (int i = 0; i < rows; i++)
            {
                long row = s + r0 + i;
                for (int x = 0; x < g; x++)
                {
                    long at = row * QStride + (long)(h * g + x) * d;
                    int r = i * g + x;
                    lse[r] = Lse[row * Hq + h * g + x] * Log2E;
                    // Pass 2 reads Di back; this tile is the only writer of these entries.
                    di[r] = Di[row * Hq + h * g + x] = Dot(DO + at, O + at, d);
                }
            }
            new Span<float>(acc, checked((int)accSize)).Clear();

            float* kt = Kt + (long)h * d * Npad + s;
            float* vt = Vt + (long)h * d * Npad + s;
            float* kRows = K + (long)s * KvStride + h * d;
            int keyEnd = r0 + rows;
            for (int j0 = 0; j0 < keyEnd; j0 += KeyBlock)
            {
                int bc = Math.Min(KeyBlock, keyEnd - j0);
                SoftmaxBackwardTile(vectors, bc, qs, dos, kt + j0, vt + j0, lse, di, r0 + 1 - j0, sc, dps);
                Gemm(vectors, d, bc, dps, KeyBlock, 1, kRows + (long)j0 * KvStride, KvStride, acc, dp, accumulate: true);
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
            int g = G, d = D, tileRows = TileRows, maxVectors = tileRows * g;

            long qsSize = Align8((long)maxVectors * d), scSize = (long)maxVectors * KeyBlock, accSize = (long)d * KeyBlock;
            float* qs = (t_tile ??= new Scratch()).Rent(2 * qsSize + 2 * scSize + 2 * accSize + 2 * Align8(maxVectors));
            float* dos = qs + qsSize;
            float* sc = dos + qsSize;
            float* dps = sc + scSize;
            float* dkt = dps + scSize;
            float* dvt = dkt + accSize;
            float* lse = dvt + accSize;
            float* di = lse + Align8(maxVectors);
            new Span<float>(dkt, checked((int)(2 * accSize))).Clear();

            float* kt = Kt + (long)h * d * Npad + s + j0;
            float* vt = Vt + (long)h * d * Npad + s + j0;
            // Rows before the block's first key see none of it.
            for (int i0 = j0; i0 < len; i0 += tileRows)
            {
                int i1 = Math.Min(len, i0 + tileRows), vectors = (i1 - i0) * g;
                // Near the diagonal only the block's first keys are visible to this tile; skip the rest.
                int keys = Math.Min(bk, i1 - j0), cols = RoundUp8(keys);
                LoadQueryTile(s + i0, i1 - i0, h, qs, dos);
                for (int i = i0; i < i1; i++)
                {
                    long at = (long)(s + i) * Hq + h * g;
                    for (int x = 0; x < g; x++)
                    {
                        lse[(i - i0) * g + x] = Lse[at + x] * Log2E;
                        di[(i - i0) * g + x] = Di[at + x];
                    }
                }
                SoftmaxBackwardTile(vectors, keys, qs, dos, kt, vt, lse, di, i0 + 1 - j0, sc, dps);
                // Transposed accumulators: dVᵀ[x, j] += Σ_r dO[r, x] P[r, j], so the GEMM streams P and dS rows
                // and reads the tile's dO and q as broadcasts. q carries scale · log2 e; ln 2 comes back below.
                Gemm(d, cols, vectors, dos, 1, d, sc, KeyBlock, dvt, KeyBlock, accumulate: true);
                Gemm(d, cols, vectors, qs, 1, d, dps, KeyBlock, dkt, KeyBlock, accumulate: true);
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
            Gemm(g, d, length, sc, ldp, 1, vRows, KvStride, o, dp, accumulate: false);
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
    /// C[M, N] = (accumulate ? C : 0) + A[M, K] B[K, N], with A(m, k) = a[m * am + k * ak] (so A may be
    /// read transposed), row k of B at b + k * ldb and row m of C at c + m * ldc. The SIMD path works in
    /// whole vectors of 8 columns: a last partial vector of B is read under a mask (B rows may end a
    /// tensor), and C rows need room for RoundUp8(N) floats (the overhang gets zeros or is kept).
    /// </summary>
    private static void Gemm(int m, int n, int k, float* a, int am, int ak, float* b, long ldb, float* c, int ldc, bool accumulate)
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
            for (int i = 0; i < m; i++)
            {
                float* ci = c + (long)i * ldc;
                if (!accumulate) new Span<float>(ci, n).Clear();
                for (int x = 0; x < k; x++)
                {
                    float ax = a[(long)i * am + (long)x * ak];
                    float* bx = b + x * ldb;
                    for (int j = 0; j < n; j++) ci[j] += ax * bx[j];
                }
            }
            return;
        }
        int full = n & ~7, n0 = 0;
        for (; n0 + 16 <= full; n0 += 16)
        {
            int i = 0;
            // Six-row tiles, ending on four-row ones rather than on two or three single rows.
            for (; m - i >= 6 && m - i - 6 is not (2 or 3); i += 6)
                Kernel6x16(k, a + (long)i * am, am, ak, b + n0, ldb, c + (long)i * ldc + n0, ldc, accumulate);
            for (; i + 4 <= m; i += 4)
                Kernel4x16(k, a + (long)i * am, am, ak, b + n0, ldb, c + (long)i * ldc + n0, ldc, accumulate);
            for (; i < m; i++)
                Kernel1x16(k, a + (long)i * am, ak, b + n0, ldb, c + (long)i * ldc + n0, accumulate);
        }
        if (n0 < full)
        {
            Gemm8<FullLoad>(m, k, a, am, ak, b + n0, ldb, c + n0, ldc, accumulate, default);
            n0 += 8;
        }
        if (n0 < n)
        {
            var mask = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(n - n0)).AsSingle();
            Gemm8<MaskedLoad>(m, k, a, am, ak, b + n0, ldb, c + n0, ldc, accumulate, mask);
        }
    }

    private static void Gemm8<TLoad>(int m, int k, float* a, int am, int ak, float* b, long ldb, float* c, int ldc,
        bool accumulate, Vector256<float> mask) where TLoad : struct, ILoad
    {
        int i = 0;
        // One vector of columns: eight rows give the eight independent FMA chains that two pipes of latency 4 need.
        for (; i + 8 <= m; i += 8)
            Kernel8x8<TLoad>(k, a + (long)i * am, am, ak, b, ldb, c + (long)i * ldc, ldc, accumulate, mask);
        for (; i + 4 <= m; i += 4)
            Kernel4x8<TLoad>(k, a + (long)i * am, am, ak, b, ldb, c + (long)i * ldc, ldc, accumulate, mask);
        for (; i < m; i++)
            Kernel1x8<TLoad>(k, a + (long)i * am, ak, b, ldb, c + (long)i * ldc, accumulate, mask);
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

    // Register tiles. 6 rows × 16 columns keeps 12 accumulators, 2 B vectors and a broadcast in the 16 ymm
    // registers and issues 12 FMAs per 8 loads; the FMA pipes, not the load ports, set the pace.

    private static void Kernel6x16(int k, float* a, int am, int ak, float* b, long ldb, float* c, int ldc, bool accumulate)
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
        float* a0 = a, a1 = a + am, a2 = a1 + am, a3 = a2 + am, a4 = a3 + am, a5 = a4 + am;
        float* bp = b;
        for (int x = 0; x < k; x++, bp += ldb, a0 += ak, a1 += ak, a2 += ak, a3 += ak, a4 += ak, a5 += ak)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var s = Vector256.Create(*a0);
            x00 = Fma.MultiplyAdd(s, b0, x00); x01 = Fma.MultiplyAdd(s, b1, x01);
            s = Vector256.Create(*a1);
            x10 = Fma.MultiplyAdd(s, b0, x10); x11 = Fma.MultiplyAdd(s, b1, x11);
            s = Vector256.Create(*a2);
            x20 = Fma.MultiplyAdd(s, b0, x20); x21 = Fma.MultiplyAdd(s, b1, x21);
            s = Vector256.Create(*a3);
            x30 = Fma.MultiplyAdd(s, b0, x30); x31 = Fma.MultiplyAdd(s, b1, x31);
            s = Vector256.Create(*a4);
            x40 = Fma.MultiplyAdd(s, b0, x40); x41 = Fma.MultiplyAdd(s, b1, x41);
            s = Vector256.Create(*a5);
            x50 = Fma.MultiplyAdd(s, b0, x50); x51 = Fma.MultiplyAdd(s, b1, x51);
        }
        Avx.Store(c0, x00); Avx.Store(c0 + 8, x01);
        Avx.Store(c1, x10); Avx.Store(c1 + 8, x11);
        Avx.Store(c2, x20); Avx.Store(c2 + 8, x21);
        Avx.Store(c3, x30); Avx.Store(c3 + 8, x31);
        Avx.Store(c4, x40); Avx.Store(c4 + 8, x41);
        Avx.Store(c5, x50); Avx.Store(c5 + 8, x51);
    }

    private static void Kernel4x16(int k, float* a, int am, int ak, float* b, long ldb, float* c, int ldc, bool accumulate)
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
        float* a0 = a, a1 = a + am, a2 = a1 + am, a3 = a2 + am;
        float* bp = b;
        for (int x = 0; x < k; x++, bp += ldb, a0 += ak, a1 += ak, a2 += ak, a3 += ak)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var s = Vector256.Create(*a0);
            x00 = Fma.MultiplyAdd(s, b0, x00); x01 = Fma.MultiplyAdd(s, b1, x01);
            s = Vector256.Create(*a1);
            x10 = Fma.MultiplyAdd(s, b0, x10); x11 = Fma.MultiplyAdd(s, b1, x11);
            s = Vector256.Create(*a2);
            x20 = Fma.MultiplyAdd(s, b0, x20); x21 = Fma.MultiplyAdd(s, b1, x21);
            s = Vector256.Create(*a3);
            x30 = Fma.MultiplyAdd(s, b0, x30); x31 = Fma.MultiplyAdd(s, b1, x31);
        }
        Avx.Store(c0, x00); Avx.Store(c0 + 8, x01);
        Avx.Store(c1, x10); Avx.Store(c1 + 8, x11);
        Avx.Store(c2, x20); Avx.Store(c2 + 8, x21);
        Avx.Store(c3, x30); Avx.Store(c3 + 8, x31);
    }

    private static void Kernel1x16(int k, float* a, int ak, float* b, long ldb, float* c, bool accumulate)
    {
        var x0 = accumulate ? Avx.LoadVector256(c) : Vector256<float>.Zero;
        var x1 = accumulate ? Avx.LoadVector256(c + 8) : Vector256<float>.Zero;
        float* bp = b;
        for (int x = 0; x < k; x++, bp += ldb, a += ak)
        {
            var s = Vector256.Create(*a);
            x0 = Fma.MultiplyAdd(s, Avx.LoadVector256(bp), x0);
            x1 = Fma.MultiplyAdd(s, Avx.LoadVector256(bp + 8), x1);
        }
        Avx.Store(c, x0);
        Avx.Store(c + 8, x1);
    }

    private static void Kernel8x8<TLoad>(int k, float* a, int am, int ak, float* b, long ldb, float* c, int ldc,
        bool accumulate, Vector256<float> mask) where TLoad : struct, ILoad
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
        float* a0 = a, a1 = a + am, a2 = a1 + am, a3 = a2 + am, a4 = a3 + am, a5 = a4 + am, a6 = a5 + am, a7 = a6 + am;
        float* bp = b;
        for (int x = 0; x < k; x++, bp += ldb, a0 += ak, a1 += ak, a2 += ak, a3 += ak, a4 += ak, a5 += ak, a6 += ak, a7 += ak)
        {
            var bv = TLoad.Load(bp, mask);
            x0 = Fma.MultiplyAdd(Vector256.Create(*a0), bv, x0);
            x1 = Fma.MultiplyAdd(Vector256.Create(*a1), bv, x1);
            x2 = Fma.MultiplyAdd(Vector256.Create(*a2), bv, x2);
            x3 = Fma.MultiplyAdd(Vector256.Create(*a3), bv, x3);
            x4 = Fma.MultiplyAdd(Vector256.Create(*a4), bv, x4);
            x5 = Fma.MultiplyAdd(Vector256.Create(*a5), bv, x5);
            x6 = Fma.MultiplyAdd(Vector256.Create(*a6), bv, x6);
            x7 = Fma.MultiplyAdd(Vector256.Create(*a7), bv, x7);
        }
        Avx.Store(c, x0); Avx.Store(c + ldc, x1); Avx.Store(c + 2 * ldc, x2); Avx.Store(c + 3 * ldc, x3);
        Avx.Store(c + 4 * ldc, x4); Avx.Store(c + 5 * ldc, x5); Avx.Store(c + 6 * ldc, x6); Avx.Store(c + 7 * ldc, x7);
    }

    private static void Kernel4x8<TLoad>(int k, float* a, int am, int ak, float* b, long ldb, float* c, int ldc,
        bool accumulate, Vector256<float> mask) where TLoad : struct, ILoad
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
        float* a0 = a, a1 = a + am, a2 = a1 + am, a3 = a2 + am;
        float* bp = b;
        for (int x = 0; x < k; x++, bp += ldb, a0 += ak, a1 += ak, a2 += ak, a3 += ak)
        {
            var bv = TLoad.Load(bp, mask);
            x0 = Fma.MultiplyAdd(Vector256.Create(*a0), bv, x0);
            x1 = Fma.MultiplyAdd(Vector256.Create(*a1), bv, x1);
            x2 = Fma.MultiplyAdd(Vector256.Create(*a2), bv, x2);
            x3 = Fma.MultiplyAdd(Vector256.Create(*a3), bv, x3);
        }
        Avx.Store(c0, x0); Avx.Store(c1, x1); Avx.Store(c2, x2); Avx.Store(c3, x3);
    }

    private static void Kernel1x8<TLoad>(int k, float* a, int ak, float* b, long ldb, float* c, bool accumulate,
        Vector256<float> mask) where TLoad : struct, ILoad
    {
        var x0 = accumulate ? Avx.LoadVector256(c) : Vector256<float>.Zero;
        float* bp = b;
        for (int x = 0; x < k; x++, bp += ldb, a += ak)
            x0 = Fma.MultiplyAdd(Vector256.Create(*a), TLoad.Load(bp, mask), x0);
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

    /// <summary>x = 2^(x - shift) in place; returns the sum.</summary>
    private static float ExpShiftSum(float* x, int n, float shift)
    {
        if (Simd)
        {
            var sv = Vector256.Create(shift);
            var sum = Vector256<float>.Zero;
            for (int i = 0; i < n; i += 8)
            {
                var e = FastMath.Exp2(Avx.Subtract(Avx.LoadVector256(x + i), sv));
                Avx.Store(x + i, e);
                sum = Avx.Add(sum, e);
            }
            return Vector256.Sum(sum);
        }
        float total = 0f;
        for (int i = 0; i < n; i++) total += x[i] = float.Exp2(x[i] - shift);
        return total;
    }

    /// <summary>x = 2^(x - shift) in place.</summary>
    private static void ExpShift(float* x, int n, float shift)
    {
        if (Simd)
        {
            var sv = Vector256.Create(shift);
            for (int i = 0; i < n; i += 8) Avx.Store(x + i, FastMath.Exp2(Avx.Subtract(Avx.LoadVector256(x + i), sv)));
            return;
        }
        for (int i = 0; i < n; i++) x[i] = float.Exp2(x[i] - shift);
    }

    /// <summary>dP = p (dP - di): the row of dS, written over dP because pass 2 still needs P.</summary>
    private static void SoftmaxGrad(float* p, float* dP, float di, int n)
    {
        if (Simd)
        {
            var dv = Vector256.Create(di);
            for (int i = 0; i < n; i += 8)
                Avx.Store(dP + i, Avx.Multiply(Avx.LoadVector256(p + i), Avx.Subtract(Avx.LoadVector256(dP + i), dv)));
            return;
        }
        for (int i = 0; i < n; i++) dP[i] = p[i] * (dP[i] - di);
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

    /// <summary>result = 2^(from - to), elementwise over n (a multiple of 8 on the SIMD path).</summary>
    private static void ExpDifference(float* from, float* to, float* result, int n)
    {
        if (Simd)
        {
            for (int i = 0; i < n; i += 8)
                Avx.Store(result + i, FastMath.Exp2(Avx.Subtract(Avx.LoadVector256(from + i), Avx.LoadVector256(to + i))));
            return;
        }
        for (int i = 0; i < n; i++) result[i] = float.Exp2(from[i] - to[i]);
    }
}
