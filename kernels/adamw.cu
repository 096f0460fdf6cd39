// adamw.cu — multi-tensor AdamW (torch.optim.AdamW semantics, decoupled weight decay) in one launch.
// Operation order of torch's single-tensor path: decay, moments, then
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps); the gradient scale (global-norm clip factor) is
// fused into the read of the gradient. Scalars are formed in double on the host, as torch does.
// Mixed precision: parameters, gradients and moments are fp32 (the master); a tensor may name a bf16 working copy,
// which the same pass refreshes from the updated master (round to nearest even), so no second launch reads it.
// Reference: src/OR1.Native/Cpu/AdamW.cs.
#include "common.cuh"

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

#define ADAMW_CHUNK 4096

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
    long long end = min(start + ADAMW_CHUNK, t.count);
    float decay = t.decay ? decayFactor : 1.0f;
    for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
        float g = t.gradient[i] * gradientScale;
        float p = t.parameter[i] * decay;
        float m = t.firstMoment[i] * beta1 + g * oneMinusBeta1;
        float v = t.secondMoment[i] * beta2 + g * g * oneMinusBeta2;
        p -= stepSize * m / (sqrtf(v) / bc2Sqrt + eps);
        t.firstMoment[i] = m;
        t.secondMoment[i] = v;
        t.parameter[i] = p;
        if (t.workingCopy) t.workingCopy[i] = from_f32<bf16>(p);
    }
}
