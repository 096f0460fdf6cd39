// elementwise.cu — fill, add, scale, bias forward/backward (float and bf16 storage), dtype conversion, row
// gather/scatter and index checks. Memory-bound one-pass kernels; grid-stride loops so any grid size covers any length.
// Reference: src/OR1.Native/Cpu/Elementwise.cs.
#include "common.cuh"

/// x[i] = value. Launch: any 1-D grid of 1-D blocks of up to 256 threads (the launchers' grid-stride block).
template <typename S>
static __device__ __forceinline__ void fill(S* __restrict__ x, long long n, float value) {
    S v = from_f32<S>(value);
    OR1_GRID_STRIDE(i, n) x[i] = v;
}
OR1_BOUNDED_STORAGE_KERNELS(fill, (256), (S* __restrict__ x, long long n, float value), (x, n, value))

/// out = a + b, rounded once to S (out may alias a or b: each element is read before it is written by the same thread).
template <typename S>
static __device__ __forceinline__ void add(const S* a, const S* b, S* out, long long n) {
    OR1_GRID_STRIDE(i, n) out[i] = from_f32<S>(to_f32(a[i]) + to_f32(b[i]));
}
OR1_BOUNDED_STORAGE_KERNELS(add, (256), (const S* a, const S* b, S* out, long long n), (a, b, out, n))

/// x *= factor.
template <typename S>
static __device__ __forceinline__ void scale(S* __restrict__ x, long long n, float factor) {
    OR1_GRID_STRIDE(i, n) x[i] = from_f32<S>(to_f32(x[i]) * factor);
}
OR1_BOUNDED_STORAGE_KERNELS(scale, (256), (S* __restrict__ x, long long n, float factor), (x, n, factor))

/// x[r, c] += bias[c].
template <typename S>
static __device__ __forceinline__ void add_bias(S* __restrict__ x, const S* __restrict__ bias, int rows, int width) {
    long long n = static_cast<long long>(rows) * width;
    OR1_GRID_STRIDE(i, n) x[i] = from_f32<S>(to_f32(x[i]) + to_f32(bias[i % width]));
}
OR1_BOUNDED_STORAGE_KERNELS(add_bias, (256), (S* __restrict__ x, const S* __restrict__ bias, int rows, int width), (x, bias, rows, width))

/// dBias[c] += sum_r dOut[r, c] (fp32, a parameter gradient). One thread owns one column and adds the rows in
/// order, so the result is deterministic and needs no atomics (reads are coalesced across the threads of a warp).
/// Launch: grid ceil(width / blockDim.x), blocks of up to 128 threads.
template <typename S>
static __device__ __forceinline__ void bias_backward(const S* __restrict__ dOut, float* __restrict__ dBias, int rows, int width) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= width) return;
    float sum = 0.f;
    for (int r = 0; r < rows; r++) sum += to_f32(dOut[static_cast<long long>(r) * width + c]);
    dBias[c] += sum;
}
OR1_BOUNDED_STORAGE_KERNELS(bias_backward, (128), (const S* __restrict__ dOut, float* __restrict__ dBias, int rows, int width), (dOut, dBias, rows, width))

/// dst = src in another storage type (float -> bf16 rounds to nearest even; bf16 -> float is exact).
/// Launch: 1-D grid-stride over n, blocks of up to 256 threads.
OR1_BOUNDED_KERNEL(convert_f32_bf16, (256), (const float* __restrict__ src, bf16* __restrict__ dst, long long n)) {
    OR1_GRID_STRIDE(i, n) dst[i] = from_f32<bf16>(src[i]);
}

OR1_BOUNDED_KERNEL(convert_bf16_f32, (256), (const bf16* __restrict__ src, float* __restrict__ dst, long long n)) {
    OR1_GRID_STRIDE(i, n) dst[i] = to_f32(src[i]);
}

/// Copies one row of rowBytes bytes, in 4-byte words when rowBytes allows (our buffers are 64-byte aligned).
static __device__ __forceinline__ void copy_row(const unsigned char* __restrict__ from, unsigned char* __restrict__ to, long long rowBytes) {
    if (rowBytes % 4 == 0) {
        for (long long w = threadIdx.x; w < rowBytes / 4; w += blockDim.x)
            reinterpret_cast<unsigned int*>(to)[w] = reinterpret_cast<const unsigned int*>(from)[w];
    } else {
        for (long long b = threadIdx.x; b < rowBytes; b += blockDim.x) to[b] = from[b];
    }
}

/// dst[i, :] = src[idx[i], :] for rows of rowBytes bytes (any dtype), idx[i] in [0, rows). An index outside is
/// reported to the error record (check id `check`, see common.cuh) and its row of dst left as it was.
/// Launch: grid over rows (grid-stride), one block of up to 128 threads per row.
OR1_BOUNDED_KERNEL(gather_rows, (128), (const unsigned char* __restrict__ src, const int* __restrict__ idx,
                                        unsigned char* __restrict__ dst, int count, long long rowBytes, int rows,
                                        unsigned long long* errors, unsigned check)) {
    for (int i = blockIdx.x; i < count; i += gridDim.x) {
        int r = idx[i];
        if (r < 0 || r >= rows) {
            if (threadIdx.x == 0) report_bad_index(errors, check, i, r);
            continue;
        }
        copy_row(src + static_cast<long long>(r) * rowBytes, dst + static_cast<long long>(i) * rowBytes, rowBytes);
    }
}

/// dst[idx[i], :] = src[i, :]; indices are distinct (contract), so rows never collide. An index outside
/// [0, rows) is reported and its row skipped. Launch: as gather_rows.
OR1_BOUNDED_KERNEL(scatter_rows, (128), (const unsigned char* __restrict__ src, const int* __restrict__ idx,
                                         unsigned char* __restrict__ dst, int count, long long rowBytes, int rows,
                                         unsigned long long* errors, unsigned check)) {
    for (int i = blockIdx.x; i < count; i += gridDim.x) {
        int r = idx[i];
        if (r < 0 || r >= rows) {
            if (threadIdx.x == 0) report_bad_index(errors, check, i, r);
            continue;
        }
        copy_row(src + static_cast<long long>(i) * rowBytes, dst + static_cast<long long>(r) * rowBytes, rowBytes);
    }
}
