// rmsnorm.cu — RMSNorm forward (saves 1/rms per row) and backward, for float and bf16 storage.
// y = w * x * r, r = 1 / sqrt(mean(x^2) + eps). Backward: dx = r (w g) - r^3 x / D * sum_j (w_j g_j x_j),
// dw += sum_n g x r (fp32, the parameter gradient). Sums in fp32. Reference: src/OR1.Native/Cpu/RmsNorm.cs.
// Memory-bound: rows move in 16-byte packs (vector_io.cuh); a row whose operands are misaligned against each other
// (a view at an odd offset, a width that is not a multiple of the pack) runs scalar.
#include "common.cuh"
#include "vector_io.cuh"
#include "column_sums.cuh"

/// Launch: one block per row (grid = rows), blockDim a multiple of 32 up to 256.
template <typename S>
static __device__ __forceinline__ void rmsnorm_forward(const S* __restrict__ x, const S* __restrict__ weight, float eps,
                                                       S* __restrict__ y, float* __restrict__ invRms, int rows, int width) {
    constexpr int N = Pack<S>::N;
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    const S* xr = x + static_cast<long long>(row) * width;
    S* yr = y + static_cast<long long>(row) * width;
    PackRange range = pack_range<N>(width, xr, yr, weight);
    float ss = 0.f;
    for_each_pack<N>(
        range, threadIdx.x, blockDim.x,
        [&](long long i) {
            Pack<S> v = load_pack(xr + i);
#pragma unroll
            for (int k = 0; k < N; k++) ss += v.v[k] * v.v[k];
        },
        [&](long long i) {
            float v = to_f32(xr[i]);
            ss += v * v;
        });
    ss = block_sum(ss, scratch);
    float r = 1.0f / sqrtf(ss / width + eps);
    if (threadIdx.x == 0) invRms[row] = r;
    // The second read of the row hits L1/L2: the block read it a moment ago.
    for_each_pack<N>(
        range, threadIdx.x, blockDim.x,
        [&](long long i) {
            Pack<S> v = load_pack(xr + i), w = load_pack(weight + i), out;
#pragma unroll
            for (int k = 0; k < N; k++) out.v[k] = v.v[k] * r * w.v[k];
            store_pack(yr + i, out);
        },
        [&](long long i) { yr[i] = from_f32<S>(to_f32(xr[i]) * r * to_f32(weight[i])); });
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
    constexpr int N = Pack<S>::N;
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    long long base = static_cast<long long>(row) * width;
    const S* dyr = dy + base;
    const S* xr = x + base;
    S* dxr = dx + base;
    PackRange range = pack_range<N>(width, dxr, dyr, xr, weight);
    float dot = 0.f;
    for_each_pack<N>(
        range, threadIdx.x, blockDim.x,
        [&](long long i) {
            Pack<S> g = load_pack(dyr + i), w = load_pack(weight + i), v = load_pack(xr + i);
#pragma unroll
            for (int k = 0; k < N; k++) dot += g.v[k] * w.v[k] * v.v[k];
        },
        [&](long long i) { dot += to_f32(dyr[i]) * to_f32(weight[i]) * to_f32(xr[i]); });
    dot = block_sum(dot, scratch);
    float r = invRms[row];
    float c = -r * r * r * dot / width;
    for_each_pack<N>(
        range, threadIdx.x, blockDim.x,
        [&](long long i) {
            Pack<S> g = load_pack(dyr + i), w = load_pack(weight + i), v = load_pack(xr + i), out;
#pragma unroll
            for (int k = 0; k < N; k++) out.v[k] = r * g.v[k] * w.v[k] + c * v.v[k];
            store_pack(dxr + i, out);
        },
        [&](long long i) { dxr[i] = from_f32<S>(r * to_f32(dyr[i]) * to_f32(weight[i]) + c * to_f32(xr[i])); });
}
OR1_BOUNDED_STORAGE_KERNELS(rmsnorm_backward_dx, (256),
                            (const S* __restrict__ dy, const S* __restrict__ x, const S* __restrict__ weight,
                             const float* __restrict__ invRms, S* __restrict__ dx, int rows, int width),
                            (dy, x, weight, invRms, dx, rows, width))

/// Stage 1 of dWeight[c] += sum_n dy[n, c] x[n, c] invRms[n] (column_sums.cuh): this block's rows into
/// partials[blockIdx.x, :]; column_partials_reduce (reduce.cu) adds them into dWeight.
/// Launch: grid (ceil(rows / rowsPerBlock), ceil(width / (32 N))), COLUMN_SUM_THREADS threads per block.
template <typename S>
static __device__ __forceinline__ void rmsnorm_backward_dw(const S* __restrict__ dy, const S* __restrict__ x,
                                                           const float* __restrict__ invRms, int rows, int width, int rowsPerBlock,
                                                           float* __restrict__ partials, int stride) {
    constexpr int N = Pack<S>::N;
    column_partials<S>(
        rows, width, rowsPerBlock, rows_packable(dy, width) && rows_packable(x, width), partials, stride,
        [&](int r, int c) {
            long long at = static_cast<long long>(r) * width + c;
            Pack<S> g = load_pack(dy + at), v = load_pack(x + at);
            float s = invRms[r];
#pragma unroll
            for (int k = 0; k < N; k++) g.v[k] = g.v[k] * v.v[k] * s;
            return g;
        },
        [&](int r, int c) {
            long long at = static_cast<long long>(r) * width + c;
            return to_f32(dy[at]) * to_f32(x[at]) * invRms[r];
        });
}
OR1_BOUNDED_STORAGE_KERNELS(rmsnorm_backward_dw, (COLUMN_SUM_THREADS),
                            (const S* __restrict__ dy, const S* __restrict__ x, const float* __restrict__ invRms, int rows, int width,
                             int rowsPerBlock, float* __restrict__ partials, int stride),
                            (dy, x, invRms, rows, width, rowsPerBlock, partials, stride))
