// logprob.cu — per-token log-prob of a target and full-vocabulary entropy from hidden states and the
// LM-head weight, without materialising [tokens x vocab] logits.
//
// As Liger-Kernel's fused linear cross-entropy: the launchers walk the rows and the vocabulary in chunks
// (sized from the device's free memory: src/OR1.Native/Ops/LogProbTiling.cs); a GEMM (cuBLAS on Cuda, with bf16
// operands for bf16 storage; gemm_f32 on Emu) writes one [rows x chunk] fp32 tile of z = hidden . W^T / T into
// scratch, and logprob_fold folds the tile in one pass into running per-row statistics (max m, s = sum e^(z-m),
// u = sum e^(z-m) (z-m)), from which lse = m + ln s and H = ln s - u/s (u kept relative to m avoids the
// cancellation of lse - E[z]). Backward recomputes each tile, turns it into dz in place (logprob_grad; bf16 dz
// for bf16 storage, in the same bytes) and two GEMMs add dz . W / T into dHidden and dz^T . hidden / T into
// dWeight. The full [tokens x vocab] logits never exist. Rows fold chunks in order: deterministic.
// Reference: src/OR1.Native/Cpu/LogProb.cs.
#include "common.cuh"
#include "vector_io.cuh"

/// Launch: 1-D grid-stride over rows, blocks of up to 256 threads.
OR1_BOUNDED_KERNEL(logprob_init, (256), (float* __restrict__ m, float* __restrict__ s, float* __restrict__ u, int rows)) {
    OR1_GRID_STRIDE(i, rows) {
        m[i] = OR1_NEG_INF;
        s[i] = 0.f;
        u[i] = 0.f;
    }
}

/// Running softmax statistics of a set of logits z relative to their max m: s = sum e^(z - m) and u = sum e^(z - m) (z - m).
/// Kept relative to m so that lse = m + ln s and H = ln s - u / s never subtract two large numbers.
struct SoftmaxMoments {
    float m, s, u;
};

/// The statistics of `a` re-based to a max m >= a.m: e^(z - m) = e^(z - a.m) f and (z - m) = (z - a.m) + (a.m - m), f = e^(a.m - m).
static __device__ __forceinline__ SoftmaxMoments rebased(SoftmaxMoments a, float m) {
    if (a.s == 0.f) return SoftmaxMoments{m, 0.f, 0.f}; // empty (a.m may be -inf: no -inf * 0)
    float delta = a.m - m, f = expf(delta);
    return SoftmaxMoments{m, a.s * f, f * (a.u + delta * a.s)};
}

static __device__ __forceinline__ SoftmaxMoments merged(SoftmaxMoments a, SoftmaxMoments b) {
    float m = fmaxf(a.m, b.m);
    if (m == OR1_NEG_INF) return a;
    SoftmaxMoments x = rebased(a, m), y = rebased(b, m);
    return SoftmaxMoments{m, x.s + y.s, x.u + y.u};
}

/// Adds up to four logits (k of them) to a thread's statistics: one re-base per group (when its max is new), then one
/// exp per logit. The single pass over the tile: the max is not found first.
static __device__ __forceinline__ void add_logits(SoftmaxMoments& a, const float (&z)[4], int k) {
    float groupMax = z[0];
#pragma unroll
    for (int i = 1; i < 4; i++)
        if (i < k) groupMax = fmaxf(groupMax, z[i]);
    if (groupMax > a.m) a = rebased(a, groupMax);
#pragma unroll
    for (int i = 0; i < 4; i++)
        if (i < k) {
            float d = z[i] - a.m, e = expf(d);
            a.s += e;
            a.u += e * d;
        }
}

/// Reads tile elements [c, c + 4) of a row (k = how many are below cols): one 16-byte load where the row allows it.
static __device__ __forceinline__ int load_logits(const float* row, int c, int cols, bool vectorized, float (&z)[4]) {
    int k = min(4, cols - c);
    if (vectorized && k == 4) {
        load_floats<4>(row + c, z);
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++) z[i] = i < k ? row[c + i] : OR1_NEG_INF;
    }
    return k;
}

/// Merges every thread's statistics over the block in a fixed order (warp shuffles, then warp 0 over the warps'
/// results): deterministic for a given block size. Thread 0 gets the block's; scratch holds 3 x 32 floats.
static __device__ __forceinline__ SoftmaxMoments block_moments(SoftmaxMoments a, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        SoftmaxMoments b{__shfl_xor_sync(OR1_FULL_MASK, a.m, o), __shfl_xor_sync(OR1_FULL_MASK, a.s, o), __shfl_xor_sync(OR1_FULL_MASK, a.u, o)};
        a = merged(a, b);
    }
    if (lane == 0) {
        scratch[warp] = a.m;
        scratch[32 + warp] = a.s;
        scratch[64 + warp] = a.u;
    }
    __syncthreads();
    if (warp == 0) {
        a = lane < warps ? SoftmaxMoments{scratch[lane], scratch[32 + lane], scratch[64 + lane]} : SoftmaxMoments{OR1_NEG_INF, 0.f, 0.f};
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            SoftmaxMoments b{__shfl_xor_sync(OR1_FULL_MASK, a.m, o), __shfl_xor_sync(OR1_FULL_MASK, a.s, o), __shfl_xor_sync(OR1_FULL_MASK, a.u, o)};
            a = merged(a, b);
        }
    }
    return a;
}

/// Folds a tile of logits (rows [rowStart, rowStart + tileRows), vocabulary [chunkStart, chunkStart +
/// cols)) into the running statistics and captures the target logits it contains, reading the tile once: every
/// thread keeps online statistics of its columns (four at a time, 16-byte loads when the row pitch allows), and
/// the block merges them. A target outside [0, vocab) is reported to the error record (common.cuh) by the first
/// chunk and its log-prob made NaN.
/// Launch: one block per tile row (grid = tileRows), blockDim a multiple of 32 up to 256.
OR1_BOUNDED_KERNEL(logprob_fold, (256), (const float* __restrict__ logits, int ldLogits, int tileRows, int cols, int chunkStart,
                                         int rowStart, const int* __restrict__ targets, float* __restrict__ m, float* __restrict__ s,
                                         float* __restrict__ u, float* __restrict__ targetLogits, int vocab,
                                         unsigned long long* errors, unsigned check)) {
    __shared__ float scratch[3 * 32];
    int r = blockIdx.x;
    if (r >= tileRows) return;
    int n = rowStart + r;
    const float* z = logits + static_cast<long long>(r) * ldLogits;
    const bool vectorized = (ldLogits & 3) == 0 && (reinterpret_cast<unsigned long long>(logits) & 15) == 0;
    SoftmaxMoments mine{OR1_NEG_INF, 0.f, 0.f};
    for (int c = 4 * threadIdx.x; c < cols; c += 4 * blockDim.x) {
        float v[4];
        int k = load_logits(z, c, cols, vectorized, v);
        add_logits(mine, v, k);
    }
    SoftmaxMoments chunk = block_moments(mine, scratch);
    if (threadIdx.x == 0) {
        SoftmaxMoments total = merged(SoftmaxMoments{m[n], s[n], u[n]}, chunk);
        m[n] = total.m;
        s[n] = total.s;
        u[n] = total.u;
        int t = targets[n];
        if (t >= chunkStart && t < chunkStart + cols) targetLogits[n] = z[t - chunkStart];
        if (chunkStart == 0 && !index_ok(t, 0, vocab, errors, check, n)) targetLogits[n] = __int_as_float(0x7fc00000);
    }
}

/// lse = m + ln s, H = ln s - u / s, logp = z_target - lse (in double, as the Cpu backend merges).
/// Launch: 1-D grid-stride over rows, blocks of up to 256 threads.
OR1_BOUNDED_KERNEL(logprob_finalize, (256), (const float* __restrict__ m, const float* __restrict__ s, const float* __restrict__ u,
                                             const float* __restrict__ targetLogits, float* __restrict__ logProbs,
                                             float* __restrict__ entropy, float* __restrict__ logSumExp, int rows)) {
    OR1_GRID_STRIDE(i, rows) {
        double ls = log(static_cast<double>(s[i]));
        float lse = static_cast<float>(m[i] + ls);
        logSumExp[i] = lse;
        entropy[i] = static_cast<float>(ls - static_cast<double>(u[i]) / s[i]);
        logProbs[i] = targetLogits[i] - lse;
    }
}

/// Stores k <= 4 gradients at out[0 .. k): one 16-byte (float) or 8-byte (bf16) store when all four go and the
/// caller's alignment allows.
static __device__ __forceinline__ void store4(float* out, const float (&g)[4], int k, bool vectorized) {
    if (vectorized && k == 4) {
        store_floats<4>(out, g);
        return;
    }
    for (int i = 0; i < k; i++) out[i] = g[i];
}

static __device__ __forceinline__ void store4(bf16* out, const float (&g)[4], int k, bool vectorized) {
    if (vectorized && k == 4) {
        store8(out, uint2{pack_bf16x2(g[0], g[1]).bits, pack_bf16x2(g[2], g[3]).bits});
        return;
    }
    for (int i = 0; i < k; i++) out[i] = from_f32<bf16>(g[i]);
}

/// Turns a tile of logits z into dz, in place: dz_j = -p_j (dH z_j + dlogp + dH (H - lse)) + dlogp [j = target],
/// p_j = e^(z_j - lse). dz's row r starts where the tile's row r does; with float storage it overwrites the logits
/// element for element (ldDz = ldLogits), with bf16 storage (rounded for the two GEMMs that follow: cuBLAS takes A
/// and B of one type) it fills the first half of the row's bytes (ldDz = 2 ldLogits bf16 elements), so no second
/// tile exists. The row goes in rounds of 4 blockDim.x elements: all of a round's logits are read before the barrier
/// and its dz written after; a round's bf16 writes cover only bytes that this or an earlier round read.
/// dEntropy may be null (no entropy gradient). A target outside [0, vocab) is reported (first chunk) and gets
/// no +dlogp term. Launch: one block of up to 256 threads (a multiple of 32) per tile row.
template <typename S>
static __device__ __forceinline__ void logprob_grad(float* logits, int ldLogits, int ldDz, int tileRows, int cols, int chunkStart,
                                                    int rowStart, const int* __restrict__ targets, const float* __restrict__ dLogProbs,
                                                    const float* __restrict__ dEntropy, const float* __restrict__ entropy,
                                                    const float* __restrict__ logSumExp, int vocab, unsigned long long* errors,
                                                    unsigned check) {
    int r = blockIdx.x;
    if (r >= tileRows) return;
    int n = rowStart + r;
    const float* z = logits + static_cast<long long>(r) * ldLogits;
    S* out = reinterpret_cast<S*>(logits) + static_cast<long long>(r) * ldDz;
    const bool vectorized = (ldLogits & 3) == 0 && (ldDz & 3) == 0 && (reinterpret_cast<unsigned long long>(logits) & 15) == 0;
    float dlp = dLogProbs[n];
    float dh = dEntropy ? dEntropy[n] : 0.f;
    float lse = logSumExp[n];
    float shift = dlp + dh * (entropy[n] - lse);
    int target = targets[n];
    if (chunkStart == 0 && threadIdx.x == 0) index_ok(target, 0, vocab, errors, check, n);
    int t = target - chunkStart; // outside [0, cols) when the target is in another chunk (or bad: then no chunk)
    for (int base = 0; base < cols; base += 4 * blockDim.x) {
        int c = base + 4 * threadIdx.x;
        float v[4];
        int k = c < cols ? load_logits(z, c, cols, vectorized, v) : 0;
        __syncthreads(); // the round's reads before any of its writes (bf16 dz aliases the logits it came from)
        if (k == 0) continue;
        float g[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float p = expf(v[i] - lse);
            g[i] = -(p * (v[i] * dh + shift));
            if (c + i == t) g[i] += dlp;
        }
        store4(out + c, g, k, vectorized);
    }
}
OR1_BOUNDED_STORAGE_KERNELS(logprob_grad, (256),
                            (float* logits, int ldLogits, int ldDz, int tileRows, int cols, int chunkStart, int rowStart,
                             const int* __restrict__ targets, const float* __restrict__ dLogProbs, const float* __restrict__ dEntropy,
                             const float* __restrict__ entropy, const float* __restrict__ logSumExp, int vocab,
                             unsigned long long* errors, unsigned check),
                            (logits, ldLogits, ldDz, tileRows, cols, chunkStart, rowStart, targets, dLogProbs, dEntropy, entropy, logSumExp,
                             vocab, errors, check))
