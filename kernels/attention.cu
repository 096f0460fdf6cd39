// attention.cu — fused causal grouped-query attention over packed variable-length sequences on the tensor cores:
// FlashAttention-2's forward and backward on mma.sync m16n8k16 (bf16 operands, fp32 accumulation), with ldmatrix
// operand loads and cp.async double buffering, through the tile vocabulary of tiles.cuh.
//
// Forward (attention_forward_bf16_d<Dp>): a block owns kBlockM = 64 query rows of one sequence and one query head,
// 16 rows per warp. It walks the key/value rows of its sequence up to its last query row in tiles of kBlockN (the
// causal tiles after the diagonal are never loaded; the diagonal one is masked), loading tile j + 1 while it
// computes tile j. Per tile each warp computes S = Q K^T for its rows, folds it into the running max and sum of an
// online softmax (in log2 units, exp2), rescales its O accumulator and adds P V with P kept in registers (the
// accumulator fragments of S are the A fragments of P V). Saves the log-sum-exp of the scaled scores per row.
//
// Backward (FlashAttention-2, P recomputed from the saved log-sum-exp; Di = rowsum(dO * O) comes from the
// attention_backward_dot pre-pass in attention_simt.cu), in kernels that give every output row exactly one
// writer, summing in a fixed order: deterministic, no atomics, so a resumed run is bit-exact.
//   attention_backward_dq_bf16_d<Dp>   per query tile: dQ = scale * sum_j dS_ij K_j over the key tiles in order
//   attention_backward_dkv_bf16_d<Dp>  per key tile and kv head (16 keys per warp): dV = sum_i P_ij dO_i and
//                                      dK = scale * sum_i dS_ij Q_i over the group's query heads and query tiles
//                                      in order (head dims up to 128; above, attention_backward_dv / _dk split
//                                      the two sums into two passes so the accumulators stay in registers)
// with dS_ij = P_ij (dO_i . V_j - Di).
//
// GQA reads each kv head's rows in place (query head h uses kv head h / (H / Hkv)); nothing is copied. The head dim
// D must be a multiple of 8 (16-byte rows for cp.async); the kernels are instantiated for padded head dims Dp of
// 32, 64, 96, 128, 192 and 256 (kernel traits below: tile sizes per Dp, as FlashAttention's kernel traits), a
// smaller D runs in the next Dp with the padding zero-filled. Anything else runs on attention_simt.cu.
// The sequence is blockIdx.y, which a GPU caps at 65,535: a micro-batch of more sequences (65,536 one-token ones fit the
// planner's largest micro-batch) is launched in groups, each given `offsets` from its first sequence on, so the kernels
// see at most 65,535 (src/OR1.Native/Kernels/KernelLaunchers.cs). Row offsets are 64-bit (AttentionRows' pitches).
// Reference: src/OR1.Native/Cpu/Attention*.cs; tests: tests/OR1.Tests/Ops/AttentionTests.cs, Bf16Storage/.
#include "tiles.cuh"

#define ATT_TC_WARPS 4
#define ATT_TC_THREADS (32 * ATT_TC_WARPS)
#define ATT_LOG2E 1.4426950408889634f
#define ATT_LN2 0.6931471805599453f

/// Tile sizes per padded head dim, chosen so that a thread's fp32 accumulators fit its 255 registers without spilling
/// (checked by the compiled-code tests). A warp owns 16 rows of a block's 64 (4 warps) and keeps a 16 x Dp
/// accumulator (O, dQ, dK and/or dV: Dp / 2 registers each) beside a 16 x tile score accumulator (tile / 2):
///   forward: key tiles of 64 rows up to Dp 128, 32 above;
///   dQ: as the forward up to 192, 16 at 256 (it also holds dP);
///   dK/dV: query tiles of 32 rows up to Dp 96 and 16 above (it holds dK and dV, and P and dP).
template <int kDp>
struct AttentionTraits {
    static constexpr int kBlockM = 16 * ATT_TC_WARPS;
    static constexpr int kBlockN = kDp <= 128 ? 64 : 32;
    static constexpr int kBlockNDq = kDp <= 128 ? 64 : kDp <= 192 ? 32 : 16;
    static constexpr int kBlockKeys = 16 * ATT_TC_WARPS;
    static constexpr int kBlockQ = kDp <= 96 ? 32 : 16;
    using RowTile = SharedTile<kBlockM, kDp>;       // Q or dO rows of the forward and dQ kernels
    using KeyTile = SharedTile<kBlockN, kDp>;       // K or V rows of the forward
    using DqKeyTile = SharedTile<kBlockNDq, kDp>;   // K or V rows of the dQ kernel
    using OwnKeyTile = SharedTile<kBlockKeys, kDp>; // the dK/dV kernel's own K and V rows
    using QueryTile = SharedTile<kBlockQ, kDp>;     // the dK/dV kernel's Q and dO rows
    /// Q; K and V double-buffered.
    static constexpr int kForwardShared = RowTile::kBytes + 4 * KeyTile::kBytes;
    /// Q and dO; K and V double-buffered.
    static constexpr int kDqShared = 2 * RowTile::kBytes + 4 * DqKeyTile::kBytes;
    /// Its K and V; Q and dO double-buffered.
    static constexpr int kDkvShared = 2 * OwnKeyTile::kBytes + 4 * QueryTile::kBytes;
};

/// Buffer b of a double-buffered pair of tiles laid out one after the other from `first`. Computed, not indexed from
/// an array: a tile array indexed by a run-time buffer number would live in local memory.
template <typename Tile>
static __device__ __forceinline__ Tile buffered(bf16* first, int b) {
    return Tile{first + b * Tile::kElements};
}

/// Geometry of one (sequence, query head) that every kernel works out the same way.
struct AttentionRows {
    int start, length;       // the sequence's first packed row and its length
    long long qPitch, kvPitch; // elements between consecutive rows of q/out and of k/v
    long long qColumn, kvColumn; // first element of this head in a row
};

static __device__ __forceinline__ AttentionRows attention_rows(const int* offsets, int seq, int h, int numHeads, int numKvHeads,
                                                               int headDim) {
    AttentionRows r;
    r.start = offsets[seq];
    r.length = offsets[seq + 1] - r.start;
    r.qPitch = static_cast<long long>(numHeads) * headDim;
    r.kvPitch = static_cast<long long>(numKvHeads) * headDim;
    r.qColumn = static_cast<long long>(h) * headDim;
    r.kvColumn = static_cast<long long>(h / (numHeads / numKvHeads)) * headDim;
    return r;
}

/// S = A_rows . B_rows^T for one warp: 16 rows of `a` from `aRow` against the N rows of `b` from `bRow`, over Dp.
template <int kDp, int N, int RA, int RB>
static __device__ __forceinline__ void scores(AccTile<N>& s, SharedTile<RA, kDp> a, int aRow, SharedTile<RB, kDp> b, int bRow, int lane) {
    s.zero();
    // The k steps index nothing in registers, so they need not be unrolled; above Dp 128 unrolling them lets the
    // compiler hoist every step's operand loads and spill.
#pragma unroll(kDp <= 128 ? 8 : 1)
    for (int kk = 0; kk < kDp; kk += 16) {
        unsigned fa[4];
        load_a(fa, a, aRow, kk, lane);
#pragma unroll
        for (int n = 0; n < N; n += 16) {
            unsigned b0[2], b1[2];
            load_b_nk(b0, b1, b, bRow + n, kk, lane);
            mma_pair(s, n / 16, fa, b0, b1);
        }
    }
}

/// acc += P . B where P (16 x N, in accumulator fragments) is rounded to bf16 and B's rows [bRow, bRow + N) hold N
/// rows of Dp values (V for O, dO for dV, Q for dK, K for dQ).
template <int kDp, int N, int RB>
static __device__ __forceinline__ void accumulate_product(AccTile<kDp>& acc, const AccTile<N>& p, SharedTile<RB, kDp> b, int bRow, int lane) {
#pragma unroll
    for (int kk = 0; kk < N; kk += 16) {
        unsigned fa[4];
        acc_to_a(fa, p, kk / 16);
#pragma unroll
        for (int n = 0; n < kDp; n += 16) {
            unsigned b0[2], b1[2];
            load_b_kn(b0, b1, b, bRow + kk, n, lane);
            mma_pair(acc, n / 16, fa, b0, b1);
        }
    }
}

/// Stores a warp's 16 x Dp accumulator (times `factor`) as bf16 rows [row0, row0 + 16) of a row-major matrix,
/// rows at or past `rows` and columns at or past `cols` left out; pairs of columns go as one 32-bit store.
template <int kDp>
static __device__ __forceinline__ void store_rows(const AccTile<kDp>& acc, float factor0, float factor1, bf16* out, long long pitch,
                                                  int row0, int rows, int cols, int lane) {
#pragma unroll
    for (int j = 0; j < AccTile<kDp>::kFragments; j++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            int r = row0 + AccTile<kDp>::row(lane, 2 * half), c = AccTile<kDp>::col(lane, j, 0);
            float f = half == 0 ? factor0 : factor1;
            if (r < rows && c < cols)
                *reinterpret_cast<bf16x2*>(out + r * pitch + c) = pack_bf16x2(acc.c[j][2 * half] * f, acc.c[j][2 * half + 1] * f);
        }
    }
}

// ------------------------------------------------------------------ forward

/// Launch: grid (ceil(maxSeqLen / 64), sequences, numHeads), block 128, dynamic shared AttentionTraits<Dp>::kForwardShared
/// bytes (above 48 KB: the opt-in attribute).
template <int kDp>
static __device__ __forceinline__ void attention_forward_tc(const bf16* __restrict__ q, const bf16* __restrict__ k,
                                                            const bf16* __restrict__ v, const int* __restrict__ offsets,
                                                            bf16* __restrict__ out, float* __restrict__ lse, int numHeads,
                                                            int numKvHeads, int headDim, float scale) {
    using T = AttentionTraits<kDp>;
    const int h = blockIdx.z, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const AttentionRows g = attention_rows(offsets, blockIdx.y, h, numHeads, numKvHeads, headDim);
    const int q0 = blockIdx.x * T::kBlockM;
    if (q0 >= g.length) return; // uniform over the block

    OR1_DYNAMIC_SHARED(bf16, smem);
    using KeyTile = typename T::KeyTile;
    typename T::RowTile qs{smem};
    bf16* const kTiles = smem + T::RowTile::kElements; // K double-buffered, then V double-buffered
    bf16* const vTiles = kTiles + 2 * KeyTile::kElements;

    const bf16* kRows = k + g.start * g.kvPitch + g.kvColumn;
    const bf16* vRows = v + g.start * g.kvPitch + g.kvColumn;
    tile_load_async(qs, q + (g.start + q0) * g.qPitch + g.qColumn, g.qPitch, g.length - q0, headDim, threadIdx.x, ATT_TC_THREADS);
    const int keyEnd = min(g.length, q0 + T::kBlockM); // causal: no key after the block's last query row
    const int tiles = (keyEnd + T::kBlockN - 1) / T::kBlockN;
    auto loadKv = [&](int j, int buffer) {
        int rows = keyEnd - j * T::kBlockN;
        tile_load_async(buffered<KeyTile>(kTiles, buffer), kRows + j * T::kBlockN * g.kvPitch, g.kvPitch, rows, headDim, threadIdx.x, ATT_TC_THREADS);
        tile_load_async(buffered<KeyTile>(vTiles, buffer), vRows + j * T::kBlockN * g.kvPitch, g.kvPitch, rows, headDim, threadIdx.x, ATT_TC_THREADS);
    };
    loadKv(0, 0);
    cp_async_commit();

    const float scaleLog2 = scale * ATT_LOG2E;
    const int row0 = q0 + 16 * warp; // this warp's first query row within the sequence
    AccTile<kDp> o;
    o.zero();
    float m[2] = {OR1_NEG_INF, OR1_NEG_INF}, l[2] = {0.f, 0.f};
    for (int j = 0; j < tiles; j++) {
        const int buffer = j & 1;
        pipeline_step(j, tiles, loadKv);

        AccTile<T::kBlockN> s;
        scores<kDp>(s, qs, 16 * warp, buffered<KeyTile>(kTiles, buffer), 0, lane);
        const int key0 = j * T::kBlockN;
        // Only the diagonal tile and the sequence's last tile hold keys to mask.
        const bool mask = key0 + T::kBlockN - 1 > row0 || key0 + T::kBlockN > g.length;
#pragma unroll
        for (int f = 0; f < AccTile<T::kBlockN>::kFragments; f++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = s.c[f][e] * scaleLog2;
                if (mask) {
                    int key = key0 + AccTile<T::kBlockN>::col(lane, f, e), row = row0 + AccTile<T::kBlockN>::row(lane, e);
                    if (key > row || key >= g.length) x = OR1_NEG_INF;
                }
                s.c[f][e] = x;
            }
        float tileMax[2], corr[2], mNew[2];
        row_max(s, tileMax);
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mNew[r] = fmaxf(m[r], tileMax[r]);
            corr[r] = m[r] == OR1_NEG_INF ? 0.f : exp2f(m[r] - mNew[r]);
        }
#pragma unroll
        for (int f = 0; f < AccTile<T::kBlockN>::kFragments; f++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float mr = mNew[e >> 1];
                s.c[f][e] = mr == OR1_NEG_INF ? 0.f : exp2f(s.c[f][e] - mr);
            }
        float tileSum[2];
        row_sum(s, tileSum);
#pragma unroll
        for (int r = 0; r < 2; r++) {
            l[r] = l[r] * corr[r] + tileSum[r];
            m[r] = mNew[r];
        }
        row_scale(o, corr);
        accumulate_product<kDp>(o, s, buffered<KeyTile>(vTiles, buffer), 0, lane);
        __syncthreads(); // the next iteration's prefetch overwrites this buffer
    }

    store_rows<kDp>(o, 1.f / l[0], 1.f / l[1], out + g.start * g.qPitch + g.qColumn, g.qPitch, row0, g.length, headDim, lane);
    if ((lane & 3) == 0) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            int row = row0 + (lane >> 2) + 8 * r;
            if (row < g.length) lse[static_cast<long long>(g.start + row) * numHeads + h] = (m[r] + log2f(l[r])) * ATT_LN2;
        }
    }
}

// ------------------------------------------------------------------ backward: dQ

/// Launch: as the forward; dynamic shared AttentionTraits<Dp>::kDqShared bytes.
template <int kDp>
static __device__ __forceinline__ void attention_backward_dq_tc(const bf16* __restrict__ dOut, const bf16* __restrict__ q,
                                                                const bf16* __restrict__ k, const bf16* __restrict__ v,
                                                                const float* __restrict__ lse, const float* __restrict__ Di,
                                                                const int* __restrict__ offsets, bf16* __restrict__ dq, int numHeads,
                                                                int numKvHeads, int headDim, float scale) {
    using T = AttentionTraits<kDp>;
    const int h = blockIdx.z, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const AttentionRows g = attention_rows(offsets, blockIdx.y, h, numHeads, numKvHeads, headDim);
    const int q0 = blockIdx.x * T::kBlockM;
    if (q0 >= g.length) return;

    OR1_DYNAMIC_SHARED(bf16, smem);
    typename T::RowTile qs{smem};
    typename T::RowTile dos{smem + T::RowTile::kElements};
    using KeyTile = typename T::DqKeyTile;
    constexpr int kTile = T::kBlockNDq;
    bf16* const kTiles = smem + 2 * T::RowTile::kElements;
    bf16* const vTiles = kTiles + 2 * KeyTile::kElements;

    tile_load_async(qs, q + (g.start + q0) * g.qPitch + g.qColumn, g.qPitch, g.length - q0, headDim, threadIdx.x, ATT_TC_THREADS);
    tile_load_async(dos, dOut + (g.start + q0) * g.qPitch + g.qColumn, g.qPitch, g.length - q0, headDim, threadIdx.x, ATT_TC_THREADS);
    const bf16* kRows = k + g.start * g.kvPitch + g.kvColumn;
    const bf16* vRows = v + g.start * g.kvPitch + g.kvColumn;
    const int keyEnd = min(g.length, q0 + T::kBlockM);
    const int tiles = (keyEnd + kTile - 1) / kTile;
    auto loadKv = [&](int j, int buffer) {
        int rows = keyEnd - j * kTile;
        tile_load_async(buffered<KeyTile>(kTiles, buffer), kRows + j * kTile * g.kvPitch, g.kvPitch, rows, headDim, threadIdx.x, ATT_TC_THREADS);
        tile_load_async(buffered<KeyTile>(vTiles, buffer), vRows + j * kTile * g.kvPitch, g.kvPitch, rows, headDim, threadIdx.x, ATT_TC_THREADS);
    };
    loadKv(0, 0);
    cp_async_commit();

    const float scaleLog2 = scale * ATT_LOG2E;
    const int row0 = q0 + 16 * warp;
    // The lane's two rows: their log-sum-exp (in log2 units) and Di; rows past the sequence end are never stored.
    float lseLog2[2], di[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int row = row0 + (lane >> 2) + 8 * r;
        long long at = static_cast<long long>(g.start + row) * numHeads + h;
        lseLog2[r] = row < g.length ? lse[at] * ATT_LOG2E : 0.f;
        di[r] = row < g.length ? Di[at] : 0.f;
    }
    AccTile<kDp> dqAcc;
    dqAcc.zero();
    for (int j = 0; j < tiles; j++) {
        const int buffer = j & 1;
        pipeline_step(j, tiles, loadKv);

        const KeyTile ks = buffered<KeyTile>(kTiles, buffer);
        AccTile<kTile> p, dp;
        scores<kDp>(p, qs, 16 * warp, ks, 0, lane);
        scores<kDp>(dp, dos, 16 * warp, buffered<KeyTile>(vTiles, buffer), 0, lane);
        const int key0 = j * kTile;
#pragma unroll
        for (int f = 0; f < AccTile<kTile>::kFragments; f++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = key0 + AccTile<kTile>::col(lane, f, e), row = row0 + AccTile<kTile>::row(lane, e);
                float pv = key > row || key >= g.length ? 0.f : exp2f(p.c[f][e] * scaleLog2 - lseLog2[e >> 1]);
                p.c[f][e] = pv * (dp.c[f][e] - di[e >> 1]); // dS
            }
        accumulate_product<kDp>(dqAcc, p, ks, 0, lane);
        __syncthreads();
    }
    store_rows<kDp>(dqAcc, scale, scale, dq + g.start * g.qPitch + g.qColumn, g.qPitch, row0, g.length, headDim, lane);
}

// ------------------------------------------------------------------ backward: dK, dV

/// One kv head's key tile against the query tiles of every query head of its group. kDv / kDk choose the sums the
/// pass accumulates (both up to Dp 128; one each above, in two launches).
/// Launch: grid (ceil(maxSeqLen / 64), sequences, numKvHeads), block 128, dynamic shared AttentionTraits<Dp>::kDkvShared bytes.
template <int kDp, bool kDv, bool kDk>
static __device__ __forceinline__ void attention_backward_kv_tc(const bf16* __restrict__ dOut, const bf16* __restrict__ q,
                                                                const bf16* __restrict__ k, const bf16* __restrict__ v,
                                                                const float* __restrict__ lse, const float* __restrict__ Di,
                                                                const int* __restrict__ offsets, bf16* __restrict__ dk,
                                                                bf16* __restrict__ dv, int numHeads, int numKvHeads, int headDim,
                                                                float scale) {
    using T = AttentionTraits<kDp>;
    const int hk = blockIdx.z, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int group = numHeads / numKvHeads;
    const AttentionRows g = attention_rows(offsets, blockIdx.y, hk * group, numHeads, numKvHeads, headDim);
    const int key0 = blockIdx.x * T::kBlockKeys;
    if (key0 >= g.length) return;

    OR1_DYNAMIC_SHARED(bf16, smem);
    typename T::OwnKeyTile ks{smem};
    typename T::OwnKeyTile vs{smem + T::OwnKeyTile::kElements};
    using QueryTile = typename T::QueryTile;
    bf16* const qTiles = smem + 2 * T::OwnKeyTile::kElements; // Q double-buffered, then dO double-buffered
    bf16* const doTiles = qTiles + 2 * QueryTile::kElements;

    tile_load_async(ks, k + (g.start + key0) * g.kvPitch + g.kvColumn, g.kvPitch, g.length - key0, headDim, threadIdx.x, ATT_TC_THREADS);
    tile_load_async(vs, v + (g.start + key0) * g.kvPitch + g.kvColumn, g.kvPitch, g.length - key0, headDim, threadIdx.x, ATT_TC_THREADS);

    // Work items in order: for each query head of the group, the query tiles from the first that sees a key of
    // this tile (causal: queries >= key0) to the sequence's end.
    const int firstTile = key0 / T::kBlockQ;
    const int tilesPerHead = (g.length + T::kBlockQ - 1) / T::kBlockQ - firstTile;
    const int items = group * tilesPerHead;
    auto loadQuery = [&](int item, int buffer) {
        int head = hk * group + item / tilesPerHead;
        int tq0 = (firstTile + item % tilesPerHead) * T::kBlockQ;
        long long at = (g.start + tq0) * g.qPitch + static_cast<long long>(head) * headDim;
        tile_load_async(buffered<QueryTile>(qTiles, buffer), q + at, g.qPitch, g.length - tq0, headDim, threadIdx.x, ATT_TC_THREADS);
        tile_load_async(buffered<QueryTile>(doTiles, buffer), dOut + at, g.qPitch, g.length - tq0, headDim, threadIdx.x, ATT_TC_THREADS);
    };
    loadQuery(0, 0);
    cp_async_commit();

    const float scaleLog2 = scale * ATT_LOG2E;
    const int keyRow0 = key0 + 16 * warp; // this warp's first key row within the sequence
    AccTile<kDp> dvAcc, dkAcc;
    if (kDv) dvAcc.zero();
    if (kDk) dkAcc.zero();
    for (int item = 0; item < items; item++) {
        const int buffer = item & 1;
        pipeline_step(item, items, loadQuery);

        const int head = hk * group + item / tilesPerHead;
        const int tq0 = (firstTile + item % tilesPerHead) * T::kBlockQ;
        const QueryTile qs = buffered<QueryTile>(qTiles, buffer), dos = buffered<QueryTile>(doTiles, buffer);
        // S^T = K Q^T for the warp's 16 keys against the tile's queries; P^T from the queries' log-sum-exp.
        AccTile<T::kBlockQ> p;
        scores<kDp>(p, ks, 16 * warp, qs, 0, lane);
        float lseLog2[AccTile<T::kBlockQ>::kFragments][2], di[AccTile<T::kBlockQ>::kFragments][2];
#pragma unroll
        for (int f = 0; f < AccTile<T::kBlockQ>::kFragments; f++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int query = tq0 + AccTile<T::kBlockQ>::col(lane, f, e);
                long long at = static_cast<long long>(g.start + query) * numHeads + head;
                lseLog2[f][e] = query < g.length ? lse[at] * ATT_LOG2E : 0.f;
                di[f][e] = query < g.length ? Di[at] : 0.f;
            }
#pragma unroll
        for (int f = 0; f < AccTile<T::kBlockQ>::kFragments; f++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int query = tq0 + AccTile<T::kBlockQ>::col(lane, f, e), key = keyRow0 + AccTile<T::kBlockQ>::row(lane, e);
                p.c[f][e] = key > query || query >= g.length ? 0.f : exp2f(p.c[f][e] * scaleLog2 - lseLog2[f][e & 1]);
            }
        if (kDv) accumulate_product<kDp>(dvAcc, p, dos, 0, lane);
        if (kDk) {
            // dP^T = V dO^T, dS^T = P^T (dP^T - Di), dK += dS^T Q.
            AccTile<T::kBlockQ> dp;
            scores<kDp>(dp, vs, 16 * warp, dos, 0, lane);
#pragma unroll
            for (int f = 0; f < AccTile<T::kBlockQ>::kFragments; f++)
#pragma unroll
                for (int e = 0; e < 4; e++) p.c[f][e] *= dp.c[f][e] - di[f][e & 1];
            accumulate_product<kDp>(dkAcc, p, qs, 0, lane);
        }
        __syncthreads();
    }
    if (kDv) store_rows<kDp>(dvAcc, 1.f, 1.f, dv + g.start * g.kvPitch + g.kvColumn, g.kvPitch, keyRow0, g.length, headDim, lane);
    if (kDk) store_rows<kDp>(dkAcc, scale, scale, dk + g.start * g.kvPitch + g.kvColumn, g.kvPitch, keyRow0, g.length, headDim, lane);
}

// ------------------------------------------------------------------ exported kernels, one set per padded head dim

// Each macro use below exports kernels named by the rule tests/OR1.Tests/Support/KernelSourceNames.cs reads:
// OR1_ATTENTION_TC_FORWARD(Dp) -> attention_forward_bf16_d<Dp> and attention_backward_dq_bf16_d<Dp>;
// OR1_ATTENTION_TC_KV(name, Dp, dV, dK) -> <name>_bf16_d<Dp>. (128, 1): one block of 128 threads per SM is all the
// register budget promises, so ptxas may use up to 255 registers (the accumulators need them; no spills).
#define OR1_ATTENTION_TC_FORWARD(DP)                                                                                     \
    OR1_BOUNDED_KERNEL(attention_forward_bf16_d##DP, (ATT_TC_THREADS, 1),                                                \
                       (const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,              \
                        const int* __restrict__ offsets, bf16* __restrict__ out, float* __restrict__ lse, int numHeads,  \
                        int numKvHeads, int headDim, float scale)) {                                                     \
        attention_forward_tc<DP>(q, k, v, offsets, out, lse, numHeads, numKvHeads, headDim, scale);                     \
    }                                                                                                                    \
    OR1_BOUNDED_KERNEL(attention_backward_dq_bf16_d##DP, (ATT_TC_THREADS, 1),                                            \
                       (const bf16* __restrict__ dOut, const bf16* __restrict__ q, const bf16* __restrict__ k,           \
                        const bf16* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ Di,         \
                        const int* __restrict__ offsets, bf16* __restrict__ dq, int numHeads, int numKvHeads,            \
                        int headDim, float scale)) {                                                                     \
        attention_backward_dq_tc<DP>(dOut, q, k, v, lse, Di, offsets, dq, numHeads, numKvHeads, headDim, scale);        \
    }

/// dK and dV in one pass (Dp up to 128) or in two (above): NAME, Dp, kDv, kDk.
#define OR1_ATTENTION_TC_KV(NAME, DP, DV, DK)                                                                            \
    OR1_BOUNDED_KERNEL(NAME##_bf16_d##DP, (ATT_TC_THREADS, 1),                                                           \
                       (const bf16* __restrict__ dOut, const bf16* __restrict__ q, const bf16* __restrict__ k,           \
                        const bf16* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ Di,         \
                        const int* __restrict__ offsets, bf16* __restrict__ dk, bf16* __restrict__ dv, int numHeads,     \
                        int numKvHeads, int headDim, float scale)) {                                                     \
        attention_backward_kv_tc<DP, DV, DK>(dOut, q, k, v, lse, Di, offsets, dk, dv, numHeads, numKvHeads, headDim, scale); \
    }

OR1_ATTENTION_TC_FORWARD(32)
OR1_ATTENTION_TC_FORWARD(64)
OR1_ATTENTION_TC_FORWARD(96)
OR1_ATTENTION_TC_FORWARD(128)
OR1_ATTENTION_TC_FORWARD(192)
OR1_ATTENTION_TC_FORWARD(256)
OR1_ATTENTION_TC_KV(attention_backward_dkv, 32, true, true)
OR1_ATTENTION_TC_KV(attention_backward_dkv, 64, true, true)
OR1_ATTENTION_TC_KV(attention_backward_dkv, 96, true, true)
OR1_ATTENTION_TC_KV(attention_backward_dkv, 128, true, true)
OR1_ATTENTION_TC_KV(attention_backward_dv, 192, true, false)
OR1_ATTENTION_TC_KV(attention_backward_dk, 192, false, true)
OR1_ATTENTION_TC_KV(attention_backward_dv, 256, true, false)
OR1_ATTENTION_TC_KV(attention_backward_dk, 256, false, true)
