// logprob.cu — per-token log-prob of a target and full-vocabulary entropy from hidden states and the
// LM-head weight, without materialising [tokens x vocab] logits.
//
// The launchers walk the vocabulary in chunks: a GEMM (cuBLAS on Cuda, gemm_f32 on Emu) writes one
// [rows x chunk] tile of z = hidden . W^T / T into scratch, and logprob_fold folds the tile into running
// per-row statistics (max m, s = sum e^(z-m), u = sum e^(z-m) (z-m)), from which lse = m + ln s and
// H = ln s - u/s (u kept relative to m avoids the cancellation of lse - E[z]). Backward recomputes each
// tile, turns it into dz (logprob_grad; in place for fp32, a bf16 copy for bf16 storage) and two GEMMs add dz . W / T into dHidden and
// dz^T . hidden / T into dWeight. Rows fold chunks in order: deterministic.
// Reference: src/OR1.Native/Cpu/LogProb.cs.
#include "common.cuh"

/// Launch: 1-D grid-stride over rows, blocks of up to 256 threads.
OR1_BOUNDED_KERNEL(logprob_init, (256), (float* __restrict__ m, float* __restrict__ s, float* __restrict__ u, int rows)) {
    OR1_GRID_STRIDE(i, rows) {
        m[i] = OR1_NEG_INF;
        s[i] = 0.f;
        u[i] = 0.f;
    }
}

/// Folds a tile of logits (rows [rowStart, rowStart + tileRows), vocabulary [chunkStart, chunkStart +
/// cols)) into the running statistics and captures the target logits it contains. A target outside
/// [0, vocab) is reported to the error record (common.cuh) by the first chunk and its log-prob made NaN.
/// Launch: one block per tile row (grid = tileRows), blockDim a multiple of 32 up to 256.
OR1_BOUNDED_KERNEL(logprob_fold, (256), (const float* __restrict__ logits, int ldLogits, int tileRows, int cols, int chunkStart,
                                         int rowStart, const int* __restrict__ targets, float* __restrict__ m, float* __restrict__ s,
                                         float* __restrict__ u, float* __restrict__ targetLogits, int vocab,
                                         unsigned long long* errors, unsigned check)) {
    __shared__ float scratch[32];
    int r = blockIdx.x;
    if (r >= tileRows) return;
    int n = rowStart + r;
    const float* z = logits + static_cast<long long>(r) * ldLogits;
    float chunkMax = OR1_NEG_INF;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) chunkMax = fmaxf(chunkMax, z[c]);
    chunkMax = block_max(chunkMax, scratch);
    float mOld = m[n], sOld = s[n], uOld = u[n];
    float mNew = mOld, sNew = sOld, uNew = uOld;
    if (chunkMax > mOld) {
        if (sOld > 0.f) {
            // Re-base the running sums from the old max to the new one: e^(z-m') = e^(z-m) e^(m-m').
            float delta = mOld - chunkMax, f = expf(delta);
            uNew = f * (uOld + delta * sOld);
            sNew = sOld * f;
        }
        mNew = chunkMax;
    }
    float es = 0.f, eu = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float d = z[c] - mNew;
        float e = expf(d);
        es += e;
        eu += e * d;
    }
    es = block_sum(es, scratch);
    eu = block_sum(eu, scratch);
    if (threadIdx.x == 0) {
        m[n] = mNew;
        s[n] = sNew + es;
        u[n] = uNew + eu;
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

/// Turns a tile of logits z into dz (written to dz, which may be the tile itself when S is float):
/// dz_j = -p_j (dH z_j + dlogp + dH (H - lse)) + dlogp [j = target], p_j = e^(z_j - lse).
/// With bf16 storage dz is rounded to bf16 for the two GEMMs that follow (cuBLAS takes A and B of one type).
/// dEntropy may be null (no entropy gradient). A target outside [0, vocab) is reported (first chunk) and gets
/// no +dlogp term. Launch: one block of up to 256 threads per tile row.
template <typename S>
static __device__ __forceinline__ void logprob_grad(const float* logits, int ldLogits, S* dz, int tileRows, int cols, int chunkStart,
                                                    int rowStart, const int* __restrict__ targets, const float* __restrict__ dLogProbs,
                                                    const float* __restrict__ dEntropy, const float* __restrict__ entropy,
                                                    const float* __restrict__ logSumExp, int vocab, unsigned long long* errors,
                                                    unsigned check) {
    int r = blockIdx.x;
    if (r >= tileRows) return;
    int n = rowStart + r;
    const float* z = logits + static_cast<long long>(r) * ldLogits;
    S* out = dz + static_cast<long long>(r) * ldLogits;
    float dlp = dLogProbs[n];
    float dh = dEntropy ? dEntropy[n] : 0.f;
    float lse = logSumExp[n];
    float shift = dlp + dh * (entropy[n] - lse);
    int target = targets[n];
    if (chunkStart == 0 && threadIdx.x == 0) index_ok(target, 0, vocab, errors, check, n);
    int t = target - chunkStart; // outside [0, cols) when the target is in another chunk (or bad: then no chunk)
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float zc = z[c];
        float p = expf(zc - lse);
        float g = -(p * (zc * dh + shift));
        if (c == t) g += dlp;
        out[c] = from_f32<S>(g);
    }
}
OR1_BOUNDED_STORAGE_KERNELS(logprob_grad, (256),
                            (const float* logits, int ldLogits, S* dz, int tileRows, int cols, int chunkStart, int rowStart,
                             const int* __restrict__ targets, const float* __restrict__ dLogProbs, const float* __restrict__ dEntropy,
                             const float* __restrict__ entropy, const float* __restrict__ logSumExp, int vocab,
                             unsigned long long* errors, unsigned check),
                            (logits, ldLogits, dz, tileRows, cols, chunkStart, rowStart, targets, dLogProbs, dEntropy, entropy, logSumExp, vocab,
                             errors, check))
