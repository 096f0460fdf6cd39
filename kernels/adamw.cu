// adamw.cu — multi-tensor AdamW (torch.optim.AdamW semantics, decoupled weight decay) in one launch.
// Operation order of torch's single-tensor path: decay, moments, then
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps); the gradient scale (global-norm clip factor) is
// fused into the read of the gradient. Scalars are formed in double on the host, as torch does.
// Mixed precision: parameters, gradients and moments are fp32 (the master); a tensor may name a bf16 working copy,
// which the same pass refreshes from the updated master (round to nearest even), so no second launch reads it.
// Memory-bound (16 or 18 bytes read and written per element): the chunk moves in 16-byte packs of 4 floats
// (vector_io.cuh; the working copy's 4 bf16 as one 8-byte store), with scalar ends where a tensor is a view at an
// offset that is not a multiple of 4 floats.
// Reference: src/OR1.Native/Cpu/AdamW.cs.
#include "common.cuh"
#include "vector_io.cuh"

/// One tensor of the step: 8 fields of 8 bytes, written by the launcher into a device table.
struct AdamWTensor {
    float* parameter;
    const float* gradient;
    float* firstMoment;
    float* secondMoment;
    long long count;
    long long firstChunk; // index of this tensor's first chunk among all chunks of the launch
    long long decay;      // non-zero: apply weight decay
    bf16* workingCopy;    // null, or the bf16 copy the forward pass reads: refreshed from the fp32 master here
};

#define ADAMW_CHUNK 4096 // elements: a multiple of 4, so every chunk of a tensor has the tensor's 16-byte alignment

/// The step of one element, shared by the pack and the scalar paths (the same bits either way).
static __device__ __forceinline__ void adamw_element(float& p, float& m, float& v, float gradient, float beta1, float beta2,
                                                     float oneMinusBeta1, float oneMinusBeta2, float eps, float stepSize,
                                                     float bc2Sqrt, float decay, float gradientScale) {
    float g = gradient * gradientScale;
    p *= decay;
    m = m * beta1 + g * oneMinusBeta1;
    v = v * beta2 + g * g * oneMinusBeta2;
    p -= stepSize * m / (sqrtf(v) / bc2Sqrt + eps);
}

/// Launch: grid = total chunks (ADAMW_CHUNK elements each, per tensor), any block size up to 256 threads.
OR1_BOUNDED_KERNEL(adamw_step, (256), (const AdamWTensor* __restrict__ tensors, int tensorCount, float beta1, float beta2,
                                      float oneMinusBeta1, float oneMinusBeta2, float eps, float stepSize, float bc2Sqrt,
                                      float decayFactor, float gradientScale)) {
    long long chunk = blockIdx.x;
    // Binary search for the tensor owning this chunk (tensors are in chunk order).
    int lo = 0, hi = tensorCount - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (tensors[mid].firstChunk <= chunk) lo = mid; else hi = mid - 1;
    }
    const AdamWTensor t = tensors[lo];
    long long start = (chunk - t.firstChunk) * ADAMW_CHUNK;
    long long n = min(static_cast<long long>(ADAMW_CHUNK), t.count - start);
    float decay = t.decay ? decayFactor : 1.0f;
    float* param = t.parameter + start;
    const float* grad = t.gradient + start;
    float* m1 = t.firstMoment + start;
    float* m2 = t.secondMoment + start;
    bf16* copy = t.workingCopy ? t.workingCopy + start : nullptr;
    PackRange r = copy ? pack_range<4>(n, param, grad, m1, m2, copy) : pack_range<4>(n, param, grad, m1, m2);
    // The pointers come from the table, so the packs move with the explicit global accesses (vector_io.cuh).
    for (long long k = threadIdx.x; k < r.packs; k += blockDim.x) {
        long long i = r.head + 4 * k;
        Pack<float> p = unpack<float>(load16_global(param + i)), g = unpack<float>(load16_global(grad + i));
        Pack<float> m = unpack<float>(load16_global(m1 + i)), v = unpack<float>(load16_global(m2 + i));
#pragma unroll
        for (int e = 0; e < 4; e++)
            adamw_element(p.v[e], m.v[e], v.v[e], g.v[e], beta1, beta2, oneMinusBeta1, oneMinusBeta2, eps, stepSize, bc2Sqrt, decay,
                          gradientScale);
        store16(m1 + i, repack(m));
        store16(m2 + i, repack(v));
        store16(param + i, repack(p));
        if (copy) store8(copy + i, uint2{pack_bf16x2(p.v[0], p.v[1]).bits, pack_bf16x2(p.v[2], p.v[3]).bits});
    }
    long long scalars = r.scalars();
    for (long long k = threadIdx.x; k < scalars; k += blockDim.x) {
        long long i = r.scalar(k);
        float p = param[i], m = m1[i], v = m2[i];
        adamw_element(p, m, v, grad[i], beta1, beta2, oneMinusBeta1, oneMinusBeta2, eps, stepSize, bc2Sqrt, decay, gradientScale);
        m1[i] = m;
        m2[i] = v;
        param[i] = p;
        if (copy) copy[i] = from_f32<bf16>(p);
    }
}
