// attention_simt.cu — fused causal grouped-query attention over packed variable-length sequences on the CUDA cores
// (no tensor cores): the fp32 path (exact to fp32, which TF32 tensor-core math would not be), bf16 with a head dim
// that is not a multiple of 8 (rows not 16-byte aligned for cp.async) and the Di pre-pass of the backward.
// The tensor-core bf16 kernels are in attention.cu, decode over a KV cache in attention_decode.cu.
//
// Forward: FlashAttention-2 tiling with an online softmax. A block owns ATT_BQ query rows of one
// sequence and one query head; it walks the key/value rows of that sequence up to its last query row
// in tiles of ATT_BK, staged in shared memory. Each warp owns query rows (warp, warp + 4, ...): lane j
// scores key j of the tile, the warp folds the tile into the row's running (max m, sum l, acc) and lanes
// own head-dim columns (lane + 32 i) of the accumulator. The [S, S] score matrix never exists; the
// per-row log-sum-exp m + ln l is saved for the backward.
//
// Backward (FlashAttention-2 style, recomputing P from the saved log-sum-exp), in three kernels so that
// every output row has exactly one writer (deterministic, no atomics):
//   attention_backward_dot  Di = rowsum(dO * O) per row and head
//   attention_backward_dq_simt   per query tile: dQ = scale * sum_j dS_ij K_j
//   attention_backward_dkv_simt  per key tile and kv head: dV = sum_i P_ij dO_i, dK = scale * sum_i dS_ij Q_i,
//                           summed over the G query heads that share the kv head
// with dS_ij = P_ij (dO_i . V_j - Di).
//
// Every kernel exists for float and bf16 storage (q, k, v, outputs and their gradients; the log-sum-exp, Di
// and all arithmetic are fp32). Head dims up to 256 (ATT_MAX_DPL columns per lane).
// The sequence is blockIdx.y, which a GPU caps at 65,535: a micro-batch of more sequences is launched in groups, each
// given `offsets` from its first sequence on (src/OR1.Native/Kernels/KernelLaunchers.cs), as in attention.cu.
// Reference: src/OR1.Native/Cpu/Attention*.cs.
#include "common.cuh"

#define ATT_BQ 16
#define ATT_BK 32
#define ATT_WARPS 4
#define ATT_ROWS_PER_WARP (ATT_BQ / ATT_WARPS)
#define ATT_MAX_DPL 8
#define ATT_BKV 16
#define ATT_KEYS_PER_WARP (ATT_BKV / ATT_WARPS)
#define ATT_QTILE 32

/// Launch: grid (ceil(maxSeqLen / 16), sequences, numHeads), block 128, dynamic shared
/// (2 * 32 * (D + 1) + 16 * D + 4 * 32) floats.
template <typename S>
static __device__ __forceinline__ void attention_forward_simt(const S* __restrict__ q, const S* __restrict__ k,
                                  const S* __restrict__ v, const int* __restrict__ offsets,
                                  S* __restrict__ out, float* __restrict__ lse,
                                  int numHeads, int numKvHeads, int headDim, float scale) {
    int seq = blockIdx.y, h = blockIdx.z;
    int seqStart = offsets[seq], seqLen = offsets[seq + 1] - seqStart;
    int tileStart = blockIdx.x * ATT_BQ;
    if (tileStart >= seqLen) return; // uniform over the block
    int tileRows = min(ATT_BQ, seqLen - tileStart);
    int D = headDim, ld = D + 1, dpl = (D + 31) / 32;
    int hk = h / (numHeads / numKvHeads);
    long long qStride = static_cast<long long>(numHeads) * D, kvStride = static_cast<long long>(numKvHeads) * D;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    OR1_DYNAMIC_SHARED(float, smem);
    float* Ks = smem;               // [ATT_BK][ld]
    float* Vs = Ks + ATT_BK * ld;   // [ATT_BK][ld]
    float* Qs = Vs + ATT_BK * ld;   // [ATT_BQ][D], pre-scaled
    float* Ps = Qs + ATT_BQ * D;    // [ATT_WARPS][32]

    for (int idx = threadIdx.x; idx < tileRows * D; idx += blockDim.x) {
        int r = idx / D, d = idx % D;
        Qs[r * D + d] = to_f32(q[(seqStart + tileStart + r) * qStride + h * D + d]) * scale;
    }

    float m[ATT_ROWS_PER_WARP], l[ATT_ROWS_PER_WARP], acc[ATT_ROWS_PER_WARP][ATT_MAX_DPL];
#pragma unroll
    for (int j = 0; j < ATT_ROWS_PER_WARP; j++) {
        m[j] = OR1_NEG_INF;
        l[j] = 0.f;
#pragma unroll
        for (int i = 0; i < ATT_MAX_DPL; i++) acc[j][i] = 0.f;
    }

    int keyEnd = tileStart + tileRows; // keys [0, keyEnd) of the sequence are visible to some row
    for (int kt = 0; kt < keyEnd; kt += ATT_BK) {
        int keys = min(ATT_BK, keyEnd - kt);
        __syncthreads(); // the previous tile is no longer read (and Qs is written, on the first pass)
        for (int idx = threadIdx.x; idx < keys * D; idx += blockDim.x) {
            int r = idx / D, d = idx % D;
            long long at = (seqStart + kt + r) * kvStride + hk * D + d;
            Ks[r * ld + d] = to_f32(k[at]);
            Vs[r * ld + d] = to_f32(v[at]);
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < ATT_ROWS_PER_WARP; j++) {
            int r = warp + ATT_WARPS * j;
            int qi = tileStart + r;
            if (r < tileRows && kt <= qi) { // warp-uniform
                int key = kt + lane;
                float s = OR1_NEG_INF;
                if (lane < keys && key <= qi) {
                    const float* qr = Qs + r * D;
                    const float* kr = Ks + lane * ld;
                    float dot = 0.f;
                    for (int d = 0; d < D; d++) dot += qr[d] * kr[d];
                    s = dot;
                }
                float mNew = fmaxf(m[j], warp_max(s)); // finite: key kt <= qi is in this tile
                float p = s == OR1_NEG_INF ? 0.f : expf(s - mNew);
                float alpha = expf(m[j] - mNew);
                l[j] = l[j] * alpha + warp_sum(p);
                m[j] = mNew;
                Ps[warp * 32 + lane] = p;
                __syncwarp();
#pragma unroll
                for (int i = 0; i < ATT_MAX_DPL; i++) {
                    int d = lane + 32 * i;
                    if (i < dpl && d < D) {
                        float a = acc[j][i] * alpha;
                        for (int t = 0; t < keys; t++) a += Ps[warp * 32 + t] * Vs[t * ld + d];
                        acc[j][i] = a;
                    }
                }
                __syncwarp();
            }
        }
    }

#pragma unroll
    for (int j = 0; j < ATT_ROWS_PER_WARP; j++) {
        int r = warp + ATT_WARPS * j;
        if (r < tileRows) {
            long long row = seqStart + tileStart + r;
            float inv = 1.0f / l[j];
#pragma unroll
            for (int i = 0; i < ATT_MAX_DPL; i++) {
                int d = lane + 32 * i;
                if (i < dpl && d < D) out[row * qStride + h * D + d] = from_f32<S>(acc[j][i] * inv);
            }
            if (lane == 0) lse[row * numHeads + h] = m[j] + logf(l[j]);
        }
    }
}
OR1_BOUNDED_STORAGE_KERNELS(attention_forward_simt, (128),
                    (const S* __restrict__ q, const S* __restrict__ k, const S* __restrict__ v, const int* __restrict__ offsets, S* __restrict__ out, float* __restrict__ lse, int numHeads, int numKvHeads, int headDim, float scale),
                    (q, k, v, offsets, out, lse, numHeads, numKvHeads, headDim, scale))

/// Di[n, h] = sum_d dO[n, h, d] * O[n, h, d]. Launch: 1-D grid of 1-D blocks (multiple of 32): one warp per (row, head).
template <typename S>
static __device__ __forceinline__ void attention_backward_dot(const S* __restrict__ dOut, const S* __restrict__ out,
                                       float* __restrict__ Di, int rows, int numHeads, int headDim) {
    long long warps = static_cast<long long>(gridDim.x) * (blockDim.x >> 5);
    long long total = static_cast<long long>(rows) * numHeads;
    int lane = threadIdx.x & 31;
    for (long long w = static_cast<long long>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); w < total; w += warps) {
        long long base = w * headDim; // rows are [numHeads * headDim]: (row, head) w starts at w * headDim
        float s = 0.f;
        for (int d = lane; d < headDim; d += 32) s += to_f32(dOut[base + d]) * to_f32(out[base + d]);
        s = warp_sum(s);
        if (lane == 0) Di[w] = s;
    }
}
OR1_BOUNDED_STORAGE_KERNELS(attention_backward_dot, (128),
                    (const S* __restrict__ dOut, const S* __restrict__ out, float* __restrict__ Di, int rows, int numHeads, int headDim),
                    (dOut, out, Di, rows, numHeads, headDim))

/// Launch: as attention_forward_simt; dynamic shared (2 * 32 * (D + 1) + 2 * 16 * D + 4 * 32) floats.
template <typename S>
static __device__ __forceinline__ void attention_backward_dq_simt(const S* __restrict__ dOut, const S* __restrict__ q,
                                      const S* __restrict__ k, const S* __restrict__ v,
                                      const float* __restrict__ lse, const float* __restrict__ Di,
                                      const int* __restrict__ offsets, S* __restrict__ dq,
                                      int numHeads, int numKvHeads, int headDim, float scale) {
    int seq = blockIdx.y, h = blockIdx.z;
    int seqStart = offsets[seq], seqLen = offsets[seq + 1] - seqStart;
    int tileStart = blockIdx.x * ATT_BQ;
    if (tileStart >= seqLen) return;
    int tileRows = min(ATT_BQ, seqLen - tileStart);
    int D = headDim, ld = D + 1, dpl = (D + 31) / 32;
    int hk = h / (numHeads / numKvHeads);
    long long qStride = static_cast<long long>(numHeads) * D, kvStride = static_cast<long long>(numKvHeads) * D;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    OR1_DYNAMIC_SHARED(float, smem);
    float* Ks = smem;
    float* Vs = Ks + ATT_BK * ld;
    float* Qs = Vs + ATT_BK * ld;    // [ATT_BQ][D], pre-scaled
    float* dOs = Qs + ATT_BQ * D;    // [ATT_BQ][D]
    float* Ps = dOs + ATT_BQ * D;    // [ATT_WARPS][32]: dS of the row being processed

    for (int idx = threadIdx.x; idx < tileRows * D; idx += blockDim.x) {
        int r = idx / D, d = idx % D;
        long long at = (seqStart + tileStart + r) * qStride + h * D + d;
        Qs[r * D + d] = to_f32(q[at]) * scale;
        dOs[r * D + d] = to_f32(dOut[at]);
    }

    float acc[ATT_ROWS_PER_WARP][ATT_MAX_DPL];
    float rowLse[ATT_ROWS_PER_WARP], rowDi[ATT_ROWS_PER_WARP];
#pragma unroll
    for (int j = 0; j < ATT_ROWS_PER_WARP; j++) {
        int r = warp + ATT_WARPS * j;
        long long row = seqStart + tileStart + min(r, tileRows - 1);
        rowLse[j] = lse[row * numHeads + h];
        rowDi[j] = Di[row * numHeads + h];
#pragma unroll
        for (int i = 0; i < ATT_MAX_DPL; i++) acc[j][i] = 0.f;
    }

    int keyEnd = tileStart + tileRows;
    for (int kt = 0; kt < keyEnd; kt += ATT_BK) {
        int keys = min(ATT_BK, keyEnd - kt);
        __syncthreads();
        for (int idx = threadIdx.x; idx < keys * D; idx += blockDim.x) {
            int r = idx / D, d = idx % D;
            long long at = (seqStart + kt + r) * kvStride + hk * D + d;
            Ks[r * ld + d] = to_f32(k[at]);
            Vs[r * ld + d] = to_f32(v[at]);
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < ATT_ROWS_PER_WARP; j++) {
            int r = warp + ATT_WARPS * j;
            int qi = tileStart + r;
            if (r < tileRows && kt <= qi) {
                int key = kt + lane;
                float ds = 0.f;
                if (lane < keys && key <= qi) {
                    const float* qr = Qs + r * D;
                    const float* dor = dOs + r * D;
                    const float* kr = Ks + lane * ld;
                    const float* vr = Vs + lane * ld;
                    float s = 0.f, dp = 0.f;
                    for (int d = 0; d < D; d++) {
                        s += qr[d] * kr[d];
                        dp += dor[d] * vr[d];
                    }
                    float p = expf(s - rowLse[j]);
                    ds = p * (dp - rowDi[j]);
                }
                Ps[warp * 32 + lane] = ds;
                __syncwarp();
#pragma unroll
                for (int i = 0; i < ATT_MAX_DPL; i++) {
                    int d = lane + 32 * i;
                    if (i < dpl && d < D) {
                        float a = acc[j][i];
                        for (int t = 0; t < keys; t++) a += Ps[warp * 32 + t] * Ks[t * ld + d];
                        acc[j][i] = a;
                    }
                }
                __syncwarp();
            }
        }
    }

#pragma unroll
    for (int j = 0; j < ATT_ROWS_PER_WARP; j++) {
        int r = warp + ATT_WARPS * j;
        if (r < tileRows) {
            long long row = seqStart + tileStart + r;
#pragma unroll
            for (int i = 0; i < ATT_MAX_DPL; i++) {
                int d = lane + 32 * i;
                if (i < dpl && d < D) dq[row * qStride + h * D + d] = from_f32<S>(acc[j][i] * scale);
            }
        }
    }
}
OR1_BOUNDED_STORAGE_KERNELS(attention_backward_dq_simt, (128),
                    (const S* __restrict__ dOut, const S* __restrict__ q, const S* __restrict__ k, const S* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ Di, const int* __restrict__ offsets, S* __restrict__ dq, int numHeads, int numKvHeads, int headDim, float scale),
                    (dOut, q, k, v, lse, Di, offsets, dq, numHeads, numKvHeads, headDim, scale))

/// Launch: grid (ceil(maxSeqLen / 16), sequences, numKvHeads), block 128, dynamic shared
/// (2 * 16 * (D + 1) + 2 * 32 * (D + 1) + 2 * 32 + 2 * 4 * 32) floats.
template <typename S>
static __device__ __forceinline__ void attention_backward_dkv_simt(const S* __restrict__ dOut, const S* __restrict__ q,
                                       const S* __restrict__ k, const S* __restrict__ v,
                                       const float* __restrict__ lse, const float* __restrict__ Di,
                                       const int* __restrict__ offsets, S* __restrict__ dk,
                                       S* __restrict__ dv, int numHeads, int numKvHeads, int headDim, float scale) {
    int seq = blockIdx.y, hk = blockIdx.z;
    int seqStart = offsets[seq], seqLen = offsets[seq + 1] - seqStart;
    int keyStart = blockIdx.x * ATT_BKV;
    if (keyStart >= seqLen) return;
    int nKeys = min(ATT_BKV, seqLen - keyStart);
    int D = headDim, ld = D + 1, dpl = (D + 31) / 32;
    int G = numHeads / numKvHeads;
    long long qStride = static_cast<long long>(numHeads) * D, kvStride = static_cast<long long>(numKvHeads) * D;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    OR1_DYNAMIC_SHARED(float, smem);
    float* Ks = smem;                  // [ATT_BKV][ld]
    float* Vs = Ks + ATT_BKV * ld;     // [ATT_BKV][ld]
    float* Qs = Vs + ATT_BKV * ld;     // [ATT_QTILE][ld], raw q
    float* dOs = Qs + ATT_QTILE * ld;  // [ATT_QTILE][ld]
    float* lseS = dOs + ATT_QTILE * ld;
    float* DiS = lseS + ATT_QTILE;
    float* Ps = DiS + ATT_QTILE;       // [ATT_WARPS][32]
    float* dSs = Ps + ATT_WARPS * 32;  // [ATT_WARPS][32]

    for (int idx = threadIdx.x; idx < nKeys * D; idx += blockDim.x) {
        int r = idx / D, d = idx % D;
        long long at = (seqStart + keyStart + r) * kvStride + hk * D + d;
        Ks[r * ld + d] = to_f32(k[at]);
        Vs[r * ld + d] = to_f32(v[at]);
    }

    float dkAcc[ATT_KEYS_PER_WARP][ATT_MAX_DPL], dvAcc[ATT_KEYS_PER_WARP][ATT_MAX_DPL];
#pragma unroll
    for (int j = 0; j < ATT_KEYS_PER_WARP; j++)
#pragma unroll
        for (int i = 0; i < ATT_MAX_DPL; i++) dkAcc[j][i] = dvAcc[j][i] = 0.f;

    for (int g = 0; g < G; g++) {
        int h = hk * G + g;
        for (int qt = keyStart; qt < seqLen; qt += ATT_QTILE) { // queries before keyStart see none of these keys
            int nq = min(ATT_QTILE, seqLen - qt);
            __syncthreads();
            for (int idx = threadIdx.x; idx < nq * D; idx += blockDim.x) {
                int r = idx / D, d = idx % D;
                long long at = (seqStart + qt + r) * qStride + h * D + d;
                Qs[r * ld + d] = to_f32(q[at]);
                dOs[r * ld + d] = to_f32(dOut[at]);
            }
            for (int r = threadIdx.x; r < nq; r += blockDim.x) {
                long long row = seqStart + qt + r;
                lseS[r] = lse[row * numHeads + h];
                DiS[r] = Di[row * numHeads + h];
            }
            __syncthreads();
#pragma unroll
            for (int j = 0; j < ATT_KEYS_PER_WARP; j++) {
                int c = warp + ATT_WARPS * j; // key within the block's tile
                if (c < nKeys) {
                    int kj = keyStart + c;
                    float p = 0.f, ds = 0.f;
                    if (lane < nq && qt + lane >= kj) {
                        const float* qr = Qs + lane * ld;
                        const float* dor = dOs + lane * ld;
                        const float* kr = Ks + c * ld;
                        const float* vr = Vs + c * ld;
                        float s = 0.f, dp = 0.f;
                        for (int d = 0; d < D; d++) {
                            s += qr[d] * kr[d];
                            dp += dor[d] * vr[d];
                        }
                        p = expf(s * scale - lseS[lane]);
                        ds = p * (dp - DiS[lane]);
                    }
                    Ps[warp * 32 + lane] = p;
                    dSs[warp * 32 + lane] = ds;
                    __syncwarp();
#pragma unroll
                    for (int i = 0; i < ATT_MAX_DPL; i++) {
                        int d = lane + 32 * i;
                        if (i < dpl && d < D) {
                            float a = dvAcc[j][i], b = dkAcc[j][i];
                            for (int t = 0; t < nq; t++) {
                                a += Ps[warp * 32 + t] * dOs[t * ld + d];
                                b += dSs[warp * 32 + t] * Qs[t * ld + d];
                            }
                            dvAcc[j][i] = a;
                            dkAcc[j][i] = b;
                        }
                    }
                    __syncwarp();
                }
            }
        }
    }

#pragma unroll
    for (int j = 0; j < ATT_KEYS_PER_WARP; j++) {
        int c = warp + ATT_WARPS * j;
        if (c < nKeys) {
            long long row = seqStart + keyStart + c;
#pragma unroll
            for (int i = 0; i < ATT_MAX_DPL; i++) {
                int d = lane + 32 * i;
                if (i < dpl && d < D) {
                    dk[row * kvStride + hk * D + d] = from_f32<S>(dkAcc[j][i] * scale);
                    dv[row * kvStride + hk * D + d] = from_f32<S>(dvAcc[j][i]);
                }
            }
        }
    }
}
OR1_BOUNDED_STORAGE_KERNELS(attention_backward_dkv_simt, (128),
                    (const S* __restrict__ dOut, const S* __restrict__ q, const S* __restrict__ k, const S* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ Di, const int* __restrict__ offsets, S* __restrict__ dk, S* __restrict__ dv, int numHeads, int numKvHeads, int headDim, float scale),
                    (dOut, q, k, v, lse, Di, offsets, dk, dv, numHeads, numKvHeads, headDim, scale))
