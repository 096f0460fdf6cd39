// elementwise.cu — fill, add, scale, bias forward/backward (float and bf16 storage), dtype conversion, row
// gather/scatter and index checks. Memory-bound one-pass kernels; grid-stride loops so any grid size covers any length.
// Reference: src/OR1.Native/Cpu/Elementwise.cs.
#include "common.cuh"

/// x[i] = value. Launch: any 1-D grid of 1-D blocks.
template <typename S>
static __device__ __forceinline__ void fill(S* __restrict__ x, long long n, float value) {
    S v = from_f32<S>(value);
    OR1_GRID_STRIDE(i, n) x[i] = v;
}
OR1_STORAGE_KERNELS(fill, (S* __restrict__ x, long long n, float value), (x, n, value))

/// out = a + b, rounded once to S (out may alias a or b: each element is read before it is written by the same thread).
template <typename S>
static __device__ __forceinline__ void add(const S* a, const S* b, S* out, long long n) {
    OR1_GRID_STRIDE(i, n) out[i] = from_f32<S>(to_f32(a[i]) + to_f32(b[i]));
}
OR1_STORAGE_KERNELS(add, (const S* a, const S* b, S* out, long long n), (a, b, out, n))

/// x *= factor.
template <typename S>
static __device__ __forceinline__ void scale(S* __restrict__ x, long long n, float factor) {
    OR1_GRID_STRIDE(i, n) x[i] = from_f32<S>(to_f32(x[i]) * factor);
}
OR1_STORAGE_KERNELS(scale, (S* __restrict__ x, long long n, float factor), (x, n, factor))

/// x[r, c] += bias[c].
template <typename S>
static __device__ __forceinline__ void add_bias(S* __restrict__ x, const S* __restrict__ bias, int rows, int width) {
    long long n = static_cast<long long>(rows) * width;
    OR1_GRID_STRIDE(i, n) x[i] = from_f32<S>(to_f32(x[i]) + to_f32(bias[i % width]));
}
OR1_STORAGE_KERNELS(add_bias, (S* __restrict__ x, const S* __restrict__ bias, int rows, int width), (x, bias, rows, width))

/// dBias[c] += sum_r dOut[r, c] (fp32, a parameter gradient). One thread owns one column and adds the rows in
/// order, so the result is deterministic and needs no atomics (reads are coalesced across the threads of a warp).
/// Launch: grid ceil(width / blockDim.x).
template <typename S>
static __device__ __forceinline__ void bias_backward(const S* __restrict__ dOut, float* __restrict__ dBias, int rows, int width) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= width) return;
    float sum = 0.f;
    for (int r = 0; r < rows; r++) sum += to_f32(dOut[static_cast<long long>(r) * width + c]);
    dBias[c] += sum;
}
OR1_STORAGE_KERNELS(bias_backward, (const S* __restrict__ dOut, float* __restrict__ dBias, int rows, int width), (dOut, dBias, rows, width))

/// dst = src in another storage type (float -> bf16 rounds to nearest even; bf16 -> float is exact).
/// Launch: 1-D grid-stride over n.
OR1_KERNEL void convert_f32_bf16(const float* __restrict__ src, bf16* __restrict__ dst, long long n) {
    OR1_GRID_STRIDE(i, n) dst[i] = from_f32<bf16>(src[i]);
}
OR1_REGISTER(convert_f32_bf16)

OR1_KERNEL void convert_bf16_f32(const bf16* __restrict__ src, float* __restrict__ dst, long long n) {
    OR1_GRID_STRIDE(i, n) dst[i] = to_f32(src[i]);
}
OR1_REGISTER(convert_bf16_f32)

/// dst[i, :] = src[idx[i], :] for rows of rowBytes bytes (any dtype). Indices were checked by
/// check_indices first. Launch: grid over rows (grid-stride), block copies a row in 4-byte words
/// when rowBytes allows.
OR1_KERNEL void gather_rows(const unsigned char* __restrict__ src, const int* __restrict__ idx,
                            unsigned char* __restrict__ dst, int count, long long rowBytes) {
    for (int i = blockIdx.x; i < count; i += gridDim.x) {
        const unsigned char* from = src + static_cast<long long>(idx[i]) * rowBytes;
        unsigned char* to = dst + static_cast<long long>(i) * rowBytes;
        if (rowBytes % 4 == 0) {
            for (long long w = threadIdx.x; w < rowBytes / 4; w += blockDim.x)
                reinterpret_cast<unsigned int*>(to)[w] = reinterpret_cast<const unsigned int*>(from)[w];
        } else {
            for (long long b = threadIdx.x; b < rowBytes; b += blockDim.x) to[b] = from[b];
        }
    }
}
OR1_REGISTER(gather_rows)

/// dst[idx[i], :] = src[i, :]; indices are distinct (contract), so rows never collide.
OR1_KERNEL void scatter_rows(const unsigned char* __restrict__ src, const int* __restrict__ idx,
                             unsigned char* __restrict__ dst, int count, long long rowBytes) {
    for (int i = blockIdx.x; i < count; i += gridDim.x) {
        const unsigned char* from = src + static_cast<long long>(i) * rowBytes;
        unsigned char* to = dst + static_cast<long long>(idx[i]) * rowBytes;
        if (rowBytes % 4 == 0) {
            for (long long w = threadIdx.x; w < rowBytes / 4; w += blockDim.x)
                reinterpret_cast<unsigned int*>(to)[w] = reinterpret_cast<const unsigned int*>(from)[w];
        } else {
            for (long long b = threadIdx.x; b < rowBytes; b += blockDim.x) to[b] = from[b];
        }
    }
}
OR1_REGISTER(scatter_rows)

/// firstBad = min(firstBad, i) over i with idx[i] outside [lo, hi). The launchers run this before a
/// kernel that indexes memory with idx, read firstBad back and raise the contract's ArgumentException,
/// so a bad id never reaches a kernel (firstBad must be preset to count).
OR1_KERNEL void check_indices(const int* __restrict__ idx, int count, int lo, int hi, int* firstBad) {
    OR1_GRID_STRIDE(i, count) {
        int v = idx[i];
        if (v < lo || v >= hi) atomicMin(firstBad, static_cast<int>(i));
    }
}
OR1_REGISTER(check_indices)
