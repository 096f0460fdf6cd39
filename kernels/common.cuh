// common.cuh — what every kernel family shares: the CUDA/emulator switch, the storage type, and the
// warp/block reductions. Compiled three ways: by nvcc (PTX/cubin), by NVRTC at run time (no host
// headers there), and by the host C++ compiler against kernels/emu (the Emu backend).
#pragma once

#if defined(__CUDACC__)
#define OR1_CUDA 1
#else
#include "emu/cuda_emu.h"
#endif

// ------------------------------------------------------------------ kernel declaration

/// Every kernel is extern "C" with a stable, unmangled name that the .NET launchers look up.
#define OR1_KERNEL extern "C" __global__

#if defined(OR1_CUDA)
#define OR1_REGISTER(name)
/// Dynamic shared memory as a typed pointer (one extern array per module avoids type clashes).
#define OR1_DYNAMIC_SHARED(type, name)                                                             \
    extern __shared__ __align__(16) unsigned char or1_dynamic_shared_[];                          \
    type* name = reinterpret_cast<type*>(or1_dynamic_shared_)
#else
#define OR1_REGISTER(name) OR1_EMU_REGISTER(name)
#define OR1_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::or1emu::tl_dynamicShared)
#endif

#define OR1_FULL_MASK 0xffffffffu

// ------------------------------------------------------------------ constants (NVRTC has no <cmath>)

#define OR1_INF (__int_as_float(0x7f800000))
#define OR1_NEG_INF (__int_as_float(static_cast<int>(0xff800000u)))
#define OR1_INT_MIN (-2147483647 - 1)

// ------------------------------------------------------------------ storage type

// Activations are stored as storage_t and computed in fp32. The default build is fp32; defining
// OR1_STORAGE_BF16 builds the bf16-storage variant of the same kernels (the recipe's GPU precision).
#if defined(OR1_STORAGE_BF16)
#if defined(OR1_CUDA)
#include <cuda_bf16.h>
typedef __nv_bfloat16 storage_t;
static __device__ __forceinline__ float to_f32(storage_t v) { return __bfloat162float(v); }
static __device__ __forceinline__ storage_t from_f32(float v) { return __float2bfloat16_rn(v); }
#else
struct storage_t { unsigned short bits; };
static inline float to_f32(storage_t v) { return __uint_as_float(static_cast<unsigned>(v.bits) << 16); }
static inline storage_t from_f32(float v) {
    unsigned b = __float_as_uint(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) return storage_t{static_cast<unsigned short>((b >> 16) | 0x40)};
    b += 0x7fffu + ((b >> 16) & 1u);
    return storage_t{static_cast<unsigned short>(b >> 16)};
}
#endif
#else
typedef float storage_t;
static __device__ __forceinline__ float to_f32(float v) { return v; }
static __device__ __forceinline__ float from_f32(float v) { return v; }
#endif

// ------------------------------------------------------------------ reductions

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(OR1_FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(OR1_FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(OR1_FULL_MASK, v, o));
    return v;
}

/// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
/// scratch: 32 floats of shared memory. The order of additions is fixed: deterministic.
static __device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // scratch may still be read by a previous reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.f;
    return warp_sum(v);
}

static __device__ __forceinline__ double block_sum_d(double v, double* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0;
    return warp_sum_d(v);
}

static __device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : OR1_NEG_INF;
    return warp_max(v);
}

/// Grid-stride loop over [0, n) with a 64-bit index.
#define OR1_GRID_STRIDE(i, n)                                                                       \
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);      \
         i += static_cast<long long>(blockDim.x) * gridDim.x)
