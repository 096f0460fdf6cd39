// common.cuh — what every kernel family shares: the CUDA/emulator switch, the storage types (float and bf16)
// with the kernel-pair macro, and the warp/block reductions. Compiled three ways: by nvcc (PTX/cubin), by NVRTC at run time (no host
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

/// A kernel entry with its launch bounds, defined and registered in one place:
///   OR1_BOUNDED_KERNEL(name, (maxThreadsPerBlock[, minBlocksPerSM]), (parameters)) { body }
/// BOUNDS are __launch_bounds__'s arguments. ptxas budgets registers for them (65,536 / (threads x blocks), at
/// most 255) instead of assuming the worst, and a GPU refuses a launch whose block has more threads than
/// maxThreadsPerBlock; the emulator records maxThreadsPerBlock and refuses the same launch, so a launcher that
/// outgrows its kernel fails in CI. The bound is the largest block the kernel's launcher in
/// src/OR1.Native/Kernels/KernelLaunchers.cs can ask for. Every entry that ships as PTX has one
/// (tests/OR1.Tests/Kernels/CompiledCodeTests.cs checks the compiled code).
#if defined(OR1_CUDA)
#define OR1_BOUNDED_KERNEL(name, BOUNDS, PARAMS) OR1_KERNEL void __launch_bounds__ BOUNDS name PARAMS
#else
// Declared before the registration, which takes the kernel's address, so that the body can follow the macro.
#define OR1_BOUNDED_KERNEL(name, BOUNDS, PARAMS)                                                    \
    OR1_KERNEL void name PARAMS;                                                                    \
    OR1_EMU_REGISTER_BOUNDED(name, OR1_EMU_MAX_THREADS BOUNDS)                                      \
    OR1_KERNEL void name PARAMS
#endif

#define OR1_FULL_MASK 0xffffffffu

/// A device function compiled once and called (large control code used from several places), not inlined at each.
#if defined(OR1_CUDA)
#define OR1_NOINLINE __noinline__
#else
#define OR1_NOINLINE __attribute__((noinline))
#endif

// ------------------------------------------------------------------ constants (NVRTC has no <cmath>)

#define OR1_INF (__int_as_float(0x7f800000))
#define OR1_NEG_INF (__int_as_float(static_cast<int>(0xff800000u)))
#define OR1_INT_MIN (-2147483647 - 1)

// ------------------------------------------------------------------ storage types
//
// Activations, weights' working copies and the KV cache are stored in a storage type S, float or bf16; every
// sum, max, exp, norm and log-sum-exp runs in fp32 (to_f32 on load, from_f32<S> on store). Kernels that touch
// storage are templates over S, instantiated twice with exported names <kernel>_f32 and <kernel>_bf16 by
// OR1_STORAGE_KERNELS, so one PTX per family serves both precisions and the launchers pick by dtype.

/// bfloat16 storage: the upper 16 bits of an IEEE binary32, bit-identical to CUDA's __nv_bfloat16 and to the
/// .NET side's BFloat16. Our own type rather than cuda_bf16.h, which NVRTC finds only with the toolkit's include
/// path on the machine; the conversions below are the hardware's (cvt.rn.bf16.f32 on sm_80+).
struct __align__(2) bf16 {
    unsigned short bits;
};

/// Two bf16 in one 32-bit register, the lower-index element in the low half (mma.sync's operand layout).
struct __align__(4) bf16x2 {
    unsigned int bits;
};

static __device__ __forceinline__ float to_f32(float v) { return v; }
static __device__ __forceinline__ float to_f32(bf16 v) { return __uint_as_float(static_cast<unsigned>(v.bits) << 16); }

/// Rounds to the storage type: round to nearest, ties to even (NaN stays NaN).
template <typename S>
static __device__ __forceinline__ S from_f32(float v);

template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }

template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float v) {
    bf16 r;
#if defined(OR1_CUDA)
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.bits) : "f"(v));
#else
    r.bits = ::or1emu::float_to_bf16_rn(v);
#endif
    return r;
}

/// Packs two floats into a bf16x2 (lo in the low half), each rounded to nearest even.
static __device__ __forceinline__ bf16x2 pack_bf16x2(float lo, float hi) {
    bf16x2 r;
#if defined(OR1_CUDA)
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r.bits) : "f"(hi), "f"(lo));
#else
    r.bits = static_cast<unsigned>(::or1emu::float_to_bf16_rn(lo)) | (static_cast<unsigned>(::or1emu::float_to_bf16_rn(hi)) << 16);
#endif
    return r;
}

namespace or1_storage_f32 { using S = float; }
namespace or1_storage_bf16 { using S = bf16; }

/// Defines the extern "C" kernels name_f32 and name_bf16 from the template name<S>: PARAMS is the parameter list
/// written with S, ARGS the argument list that forwards them (each namespace binds S; extern "C" keeps the
/// exported names unmangled, which the .NET launchers look up).
#define OR1_STORAGE_KERNELS(name, PARAMS, ARGS)                                                     \
    namespace or1_storage_f32 {                                                                     \
    OR1_KERNEL void name##_f32 PARAMS { name<S> ARGS; }                                             \
    OR1_REGISTER(name##_f32)                                                                        \
    }                                                                                               \
    namespace or1_storage_bf16 {                                                                    \
    OR1_KERNEL void name##_bf16 PARAMS { name<S> ARGS; }                                            \
    OR1_REGISTER(name##_bf16)                                                                       \
    }

/// OR1_STORAGE_KERNELS with launch bounds (see OR1_BOUNDED_KERNEL) on both instantiations.
#define OR1_BOUNDED_STORAGE_KERNELS(name, BOUNDS, PARAMS, ARGS)                                     \
    namespace or1_storage_f32 {                                                                     \
    OR1_BOUNDED_KERNEL(name##_f32, BOUNDS, PARAMS) { name<S> ARGS; }                                \
    }                                                                                               \
    namespace or1_storage_bf16 {                                                                    \
    OR1_BOUNDED_KERNEL(name##_bf16, BOUNDS, PARAMS) { name<S> ARGS; }                               \
    }

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

// ------------------------------------------------------------------ device-side argument checks
//
// Values only the device holds (token ids, targets, row indices, cache slots and lengths) are checked by the
// kernels that index memory with them: a bad one is skipped (never dereferenced) and reported here, and the host
// reads the record at its next synchronisation, so no op waits for the host (src/OR1.Native/Kernels/DeviceErrors.cs
// turns the record into the op's ArgumentException). The record is OR1_CHECK_RING + 1 words: word 0 is the
// smallest failing check id (the host numbers checks in issue order, so the first failing op wins), word
// 1 + id % OR1_CHECK_RING holds that check's smallest failing position (high half) with its value (low half).
// Both are atomicMin, so the report is the same whatever order the threads run in.
#define OR1_CHECK_RING 8192

static __device__ __forceinline__ void report_bad_index(unsigned long long* record, unsigned check, long long position, int value) {
    atomicMin(record, static_cast<unsigned long long>(check));
    atomicMin(record + 1 + check % OR1_CHECK_RING,
              (static_cast<unsigned long long>(static_cast<unsigned>(position)) << 32) | static_cast<unsigned>(value));
}

/// True when lo <= v < hi; otherwise reports (check, position, v) and returns false.
static __device__ __forceinline__ bool index_ok(int v, int lo, int hi, unsigned long long* record, unsigned check, long long position) {
    if (v >= lo && v < hi) return true;
    report_bad_index(record, check, position, v);
    return false;
}

// ------------------------------------------------------------------ warp matrix instructions and cp.async

#include "mma.cuh"
