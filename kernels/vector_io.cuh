// vector_io.cuh — 16-byte global loads and stores for the memory-bound kernels, and the split of a range of
// elements into scalar ends and aligned 16-byte packs.
//
// Why: these kernels do a few flops per byte, so only bandwidth counts, and an SM reaches HBM bandwidth only with
// enough bytes in flight. A thread that moves 16 bytes per instruction (LDG.E.128 / STG.E.128) keeps four times the
// bytes of one that moves a float (eight times those of a bf16) in flight with the same instruction count; this is
// what PyTorch's vectorized elementwise loops and Apex's multi-tensor kernels do. A pack is those 16 bytes widened to
// fp32 in registers: 4 floats or 8 bf16. Compute stays fp32; a store rounds once.
//
// Tensors are views at any element offset and rows have any width, so a kernel cannot assume alignment: a range is
// split into a scalar head up to its first 16-byte boundary, whole packs, and a scalar tail (PackRange). When the
// operands of one range are misaligned against each other (no element index is 16-byte aligned in all of them) the
// whole range runs scalar: correct for any view, fast for the layouts the model uses. A GPU faults on a misaligned
// vector access; the emulator fails the launch there (cuda_emu.h, check_alignment), so a wrong split shows in CI.
#pragma once
#include "common.cuh"

// ------------------------------------------------------------------ raw 16- and 8-byte accesses

/// 16 bytes at p, which must be 16-byte aligned. A plain load, so that the compiler sees the kernel's const
/// __restrict__ inputs and reads them through the read-only path (LDG.E.128.CONSTANT).
static __device__ __forceinline__ uint4 load16(const void* p) {
#if !defined(OR1_CUDA)
    ::or1emu::check_alignment(p, 16, "16-byte global load");
#endif
    return *static_cast<const uint4*>(p);
}

/// load16 for a pointer read from memory (a multi-tensor table's entry): the compiler cannot tell it from a shared or
/// local address and would emit a generic LD, and its address-space inference gives up as soon as the pointer's
/// bits feed an alignment test (nvcc 11.8), so the load is an explicit ld.global. Volatile with a memory clobber: it
/// stays ordered with the kernel's other accesses of the same addresses.
static __device__ __forceinline__ uint4 load16_global(const void* p) {
#if defined(OR1_CUDA)
    uint4 v;
    asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
    return v;
#else
    return load16(p);
#endif
}

/// 16 bytes to global memory at p (16-byte aligned). An explicit st.global.v4: written as a uint4 assignment, nvcc
/// 11.8 sometimes splits the store into four 4-byte ones (when the words come from cvt.rn.bf16x2, for one), and the
/// table kernels' pointers would get a generic ST.
static __device__ __forceinline__ void store16(void* p, uint4 v) {
#if defined(OR1_CUDA)
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
#else
    ::or1emu::check_alignment(p, 16, "16-byte global store");
    *static_cast<uint4*>(p) = v;
#endif
}

/// 8 bytes to global memory at p (8-byte aligned): four bf16.
static __device__ __forceinline__ void store8(void* p, uint2 v) {
#if defined(OR1_CUDA)
    asm volatile("st.global.v2.u32 [%0], {%1, %2};" ::"l"(p), "r"(v.x), "r"(v.y) : "memory");
#else
    ::or1emu::check_alignment(p, 8, "8-byte global store");
    *static_cast<uint2*>(p) = v;
#endif
}

// ------------------------------------------------------------------ packs: 16 bytes of storage as fp32 values

/// The values of one 16-byte access of storage type S, in fp32: 4 floats or 8 bf16.
template <typename S>
struct Pack {
    static constexpr int N = 16 / static_cast<int>(sizeof(S));
    float v[N];
};

/// 16 bytes of S widened to fp32 (bf16: the bits above 16 zero bits, exact).
template <typename S>
static __device__ __forceinline__ Pack<S> unpack(uint4 raw) {
    unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
    Pack<S> r;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if constexpr (sizeof(S) == 4) {
            r.v[k] = __uint_as_float(w[k]);
        } else {
            r.v[2 * k] = __uint_as_float(w[k] << 16);
            r.v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
        }
    }
    return r;
}

/// A pack rounded once to S (bf16: to nearest even, two values per cvt) as 16 bytes.
template <typename S>
static __device__ __forceinline__ uint4 repack(const Pack<S>& x) {
    unsigned w[4];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if constexpr (sizeof(S) == 4) w[k] = __float_as_uint(x.v[k]);
        else w[k] = pack_bf16x2(x.v[2 * k], x.v[2 * k + 1]).bits;
    }
    return uint4{w[0], w[1], w[2], w[3]};
}

/// The pack at p (16-byte aligned).
template <typename S>
static __device__ __forceinline__ Pack<S> load_pack(const S* p) {
    return unpack<S>(load16(p));
}

/// Stores a pack at p (16-byte aligned), each value rounded once to S.
template <typename S>
static __device__ __forceinline__ void store_pack(S* p, const Pack<S>& x) {
    store16(p, repack(x));
}

/// N consecutive floats at p (16-byte aligned; N a multiple of 4) as N / 4 16-byte loads: the fp32 side of a pack
/// of bf16 (parameter gradients, conversions).
template <int N>
static __device__ __forceinline__ void load_floats(const float* p, float (&v)[N]) {
    static_assert(N % 4 == 0, "whole 16-byte accesses");
#pragma unroll
    for (int q = 0; q < N / 4; q++) {
        Pack<float> f = load_pack(p + 4 * q);
#pragma unroll
        for (int k = 0; k < 4; k++) v[4 * q + k] = f.v[k];
    }
}

template <int N>
static __device__ __forceinline__ void store_floats(float* p, const float (&v)[N]) {
    static_assert(N % 4 == 0, "whole 16-byte accesses");
#pragma unroll
    for (int q = 0; q < N / 4; q++) {
        Pack<float> f;
#pragma unroll
        for (int k = 0; k < 4; k++) f.v[k] = v[4 * q + k];
        store_pack(p + 4 * q, f);
    }
}

// ------------------------------------------------------------------ splitting a range into scalar ends and packs

/// Elements [0, n) of a loop over one or more operands, split for packs of N elements: [0, head) one by one, then
/// `packs` packs starting at head, head + N, ..., then [tail, n) one by one. Every pack is aligned in every operand.
struct PackRange {
    long long head, packs, tail, n;

    /// Elements handled one by one: the head and the tail.
    __device__ __forceinline__ long long scalars() const { return head + (n - tail); }
    /// The element of the k-th scalar, k < scalars().
    __device__ __forceinline__ long long scalar(long long k) const { return k < head ? k : tail + (k - head); }
};

/// The alignment a pack of N elements of T needs: its size, up to 16 bytes (a bf16 working copy of a 4-float pack is
/// one 8-byte access; a float side of an 8-element pack is two 16-byte accesses).
template <int N, typename T>
static __device__ __forceinline__ unsigned long long pack_alignment() {
    return N * sizeof(T) < 16 ? N * sizeof(T) : 16;
}

template <int N, typename T>
static __device__ __forceinline__ bool pack_aligned(const T* p, long long at) {
    return (reinterpret_cast<unsigned long long>(p + at) & (pack_alignment<N, T>() - 1)) == 0;
}

/// The split of n elements at `first` and `others` (element i of every operand at index i): the head runs to the first
/// pack boundary of `first`; if an other operand is not aligned there too, there are no packs at all.
template <int N, typename T0, typename... T>
static __device__ __forceinline__ PackRange pack_range(long long n, const T0* first, const T*... others) {
    unsigned long long align = pack_alignment<N, T0>();
    unsigned long long misaligned = reinterpret_cast<unsigned long long>(first) & (align - 1);
    long long head = static_cast<long long>(((align - misaligned) & (align - 1)) / sizeof(T0));
    if (head > n || !(pack_aligned<N>(others, head) && ...)) head = n;
    long long packs = (n - head) / N;
    return PackRange{head, packs, head + packs * N, n};
}

/// vector(i) for the first element i of every pack of r, then scalar(i) for every other element, dealt round robin to
/// `worker` of `workers` (the threads of a block over a row, or of the grid in a grid-stride loop). Consecutive
/// workers take consecutive packs, so a warp's accesses are 512 contiguous bytes.
template <int N, typename Vector, typename Scalar>
static __device__ __forceinline__ void for_each_pack(const PackRange& r, long long worker, long long workers, Vector vector, Scalar scalar) {
    for (long long k = worker; k < r.packs; k += workers) vector(r.head + k * N);
    long long scalars = r.scalars();
    for (long long k = worker; k < scalars; k += workers) scalar(r.scalar(k));
}

/// The grid-stride worker index and count of the calling thread.
static __device__ __forceinline__ long long grid_worker() { return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; }
static __device__ __forceinline__ long long grid_workers() { return static_cast<long long>(blockDim.x) * gridDim.x; }
