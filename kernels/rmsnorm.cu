// rmsnorm.cu — RMSNorm forward (saves 1/rms per row) and backward, for float and bf16 storage.
// y = w * x * r, r = 1 / sqrt(mean(x^2) + eps). Backward: dx = r (w g) - r^3 x / D * sum_j (w_j g_j x_j),
// dw += sum_n g x r (fp32, the parameter gradient). Sums in fp32. Reference: src/OR1.Native/Cpu/RmsNorm.cs.
#include "common.cuh"

/// Launch: one block per row (grid = rows), blockDim a multiple of 32 up to 256.
template <typename S>
static __device__ __forceinline__ void rmsnorm_forward(const S* __restrict__ x, const S* __restrict__ weight, float eps,
                                                       S* __restrict__ y, float* __restrict__ invRms, int rows, int width) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    const S* xr = x + static_cast<long long>(row) * width;
    S* yr = y + static_cast<long long>(row) * width;
    float ss = 0.f;
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        float v = to_f32(xr[i]);
        ss += v * v;
    }
    ss = block_sum(ss, scratch);
    float r = 1.0f / sqrtf(ss / width + eps);
    if (threadIdx.x == 0) invRms[row] = r;
    for (int i = threadIdx.x; i < width; i += blockDim.x) yr[i] = from_f32<S>(to_f32(xr[i]) * r * to_f32(weight[i]));
}
OR1_BOUNDED_STORAGE_KERNELS(rmsnorm_forward, (256),
                            (const S* __restrict__ x, const S* __restrict__ weight, float eps, S* __restrict__ y,
                             float* __restrict__ invRms, int rows, int width),
                            (x, weight, eps, y, invRms, rows, width))

/// dx for every row (overwrites). Launch: one block per row, as the forward.
template <typename S>
static __device__ __forceinline__ void rmsnorm_backward_dx(const S* __restrict__ dy, const S* __restrict__ x,
                                                           const S* __restrict__ weight, const float* __restrict__ invRms,
                                                           S* __restrict__ dx, int rows, int width) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    long long base = static_cast<long long>(row) * width;
    float dot = 0.f;
    for (int i = threadIdx.x; i < width; i += blockDim.x) dot += to_f32(dy[base + i]) * to_f32(weight[i]) * to_f32(x[base + i]);
    dot = block_sum(dot, scratch);
    float r = invRms[row];
    float c = -r * r * r * dot / width;
    for (int i = threadIdx.x; i < width; i += blockDim.x)
        dx[base + i] = from_f32<S>(r * to_f32(dy[base + i]) * to_f32(weight[i]) + c * to_f32(x[base + i]));
}
OR1_BOUNDED_STORAGE_KERNELS(rmsnorm_backward_dx, (256),
                            (const S* __restrict__ dy, const S* __restrict__ x, const S* __restrict__ weight,
                             const float* __restrict__ invRms, S* __restrict__ dx, int rows, int width),
                            (dy, x, weight, invRms, dx, rows, width))

/// dWeight[c] += sum_n dy[n, c] x[n, c] invRms[n] (accumulates, fp32). One thread per column walks the rows
/// in order: deterministic, no atomics. Launch: grid ceil(width / blockDim.x), blocks of up to 128 threads.
template <typename S>
static __device__ __forceinline__ void rmsnorm_backward_dw(const S* __restrict__ dy, const S* __restrict__ x,
                                                           const float* __restrict__ invRms, float* __restrict__ dWeight,
                                                           int rows, int width) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= width) return;
    float sum = 0.f;
    for (int n = 0; n < rows; n++) {
        long long at = static_cast<long long>(n) * width + c;
        sum += to_f32(dy[at]) * to_f32(x[at]) * invRms[n];
    }
    dWeight[c] += sum;
}
OR1_BOUNDED_STORAGE_KERNELS(rmsnorm_backward_dw, (128),
                            (const S* __restrict__ dy, const S* __restrict__ x, const float* __restrict__ invRms,
                             float* __restrict__ dWeight, int rows, int width),
                            (dy, x, invRms, dWeight, rows, width))
