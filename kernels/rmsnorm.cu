// rmsnorm.cu — RMSNorm forward (saves 1/rms per row) and backward.
// y = w * x * r, r = 1 / sqrt(mean(x^2) + eps). Backward: dx = r (w g) - r^3 x / D * sum_j (w_j g_j x_j),
// dw += sum_n g x r. Reference: src/OR1.Native/Cpu/RmsNorm.cs.
#include "common.cuh"

/// Launch: one block per row (grid = rows), blockDim a multiple of 32.
OR1_KERNEL void rmsnorm_forward(const storage_t* __restrict__ x, const float* __restrict__ weight, float eps,
                                storage_t* __restrict__ y, float* __restrict__ invRms, int rows, int width) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    const storage_t* xr = x + static_cast<long long>(row) * width;
    storage_t* yr = y + static_cast<long long>(row) * width;
    float ss = 0.f;
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        float v = to_f32(xr[i]);
        ss += v * v;
    }
    ss = block_sum(ss, scratch);
    float r = 1.0f / sqrtf(ss / width + eps);
    if (threadIdx.x == 0) invRms[row] = r;
    for (int i = threadIdx.x; i < width; i += blockDim.x) yr[i] = from_f32(to_f32(xr[i]) * r * weight[i]);
}
OR1_REGISTER(rmsnorm_forward)

/// dx for every row (overwrites). Launch: one block per row.
OR1_KERNEL void rmsnorm_backward_dx(const storage_t* __restrict__ dy, const storage_t* __restrict__ x,
                                    const float* __restrict__ weight, const float* __restrict__ invRms,
                                    storage_t* __restrict__ dx, int rows, int width) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    long long base = static_cast<long long>(row) * width;
    float dot = 0.f;
    for (int i = threadIdx.x; i < width; i += blockDim.x) dot += to_f32(dy[base + i]) * weight[i] * to_f32(x[base + i]);
    dot = block_sum(dot, scratch);
    float r = invRms[row];
    float c = -r * r * r * dot / width;
    for (int i = threadIdx.x; i < width; i += blockDim.x)
        dx[base + i] = from_f32(r * to_f32(dy[base + i]) * weight[i] + c * to_f32(x[base + i]));
}
OR1_REGISTER(rmsnorm_backward_dx)

/// dWeight[c] += sum_n dy[n, c] x[n, c] invRms[n] (accumulates). One thread per column walks the rows
/// in order: deterministic, no atomics. Launch: grid ceil(width / blockDim.x).
OR1_KERNEL void rmsnorm_backward_dw(const storage_t* __restrict__ dy, const storage_t* __restrict__ x,
                                    const float* __restrict__ invRms, float* __restrict__ dWeight, int rows, int width) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= width) return;
    float sum = 0.f;
    for (int n = 0; n < rows; n++) {
        long long at = static_cast<long long>(n) * width + c;
        sum += to_f32(dy[at]) * to_f32(x[at]) * invRms[n];
    }
    dWeight[c] += sum;
}
OR1_REGISTER(rmsnorm_backward_dw)
