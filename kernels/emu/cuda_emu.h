// cuda_emu.h — a host emulation of the CUDA execution model, so kernels/*.cu compile unchanged with a
// host C++ compiler and run on a CPU (the Emu backend, and CI without a GPU).
//
// Model: a launch runs its blocks on a small pool of OS threads, one block at a time per OS thread.
// Inside a block every CUDA thread is a fiber (its own stack, cooperative switches), so
// __syncthreads, __syncwarp, warp shuffles and votes are real rendezvous points: a fiber runs until
// it reaches one, then the next fiber runs. Between two rendezvous the fibers of a block run one after
// another in a fixed order (forward or, for race hunting, reverse), which makes a kernel's races
// deterministic, and the reverse schedule makes them visible (see or1_emu_set_schedule).
//   __shared__        -> static thread_local: one copy per OS thread = per running block
//   dynamic shared    -> OR1_DYNAMIC_SHARED(type, name) (kernels/common.cuh), a per-launch buffer
//   threadIdx         -> the running fiber's index; blockIdx/blockDim/gridDim -> per OS thread
//   atomics           -> real atomics (blocks of one launch run in parallel on several OS threads)
// Only what kernels/*.cu use is provided; a missing piece is a compile error, never a silent no-op.
#pragma once

#include <cstdint>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <cfloat>
#include <climits>
#include <atomic>
#include <type_traits>
#include <utility>

// ------------------------------------------------------------------ qualifiers

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
// A bare __launch_bounds__ is invisible here; OR1_BOUNDED_KERNEL's bounds reach the emulator, which enforces them.
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static thread_local
#define __constant__ static const

// ------------------------------------------------------------------ vector types used for indices

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(8))) uint2 { unsigned int x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };

namespace or1emu {

/// One CUDA thread: a fiber with its own stack.
struct Fiber {
    void* sp = nullptr;           // saved stack pointer while switched out
    unsigned char* stack = nullptr;
    std::size_t stackSize = 0;
    uint3 tid{0, 0, 0};
    int linear = 0;               // x + y * bx + z * bx * by
    int warp = 0, lane = 0;
    int state = 0;                // 0 ready, 1 waiting at a block barrier, 2 waiting at a warp barrier, 3 done
    unsigned waitGen = 0;         // the barrier generation this fiber waits to see pass
    void* ucontextStorage = nullptr; // fallback context (non-x86-64)
    void* asanFakeStack = nullptr;   // AddressSanitizer's fake stack while switched out (the memcheck build)
};

/// Per-OS-thread state of the block being run.
struct BlockState;
// Default TLS model: initial-exec would put the whole TLS segment (the kernels' __shared__ arrays too)
// into the static TLS block, which a dlopen'ed library cannot get.
#define OR1EMU_TLS
extern thread_local Fiber* tl_fiber OR1EMU_TLS;
extern thread_local BlockState* tl_block OR1EMU_TLS;
extern thread_local uint3 tl_blockIdx OR1EMU_TLS;
extern thread_local dim3 tl_blockDim OR1EMU_TLS;
extern thread_local dim3 tl_gridDim OR1EMU_TLS;
extern thread_local unsigned char* tl_dynamicShared OR1EMU_TLS;

// Rendezvous points (emu_runtime.cpp). A warp collective's mask must name the calling lane and only
// lanes that exist and have not exited; anything else fails the launch (undefined behaviour on a GPU).
// `what` names the intrinsic in those messages.
void syncthreads();
void syncwarp(unsigned mask);
/// Warp exchange: every lane in mask deposits 8 bytes, waits for the others, reads lane src's (all-ones
/// bits when src is not in the mask: a GPU's value is undefined there).
unsigned long long warp_exchange(unsigned mask, unsigned long long value, int src, const char* what);
unsigned warp_ballot(unsigned mask, int predicate, const char* what);
unsigned active_mask();
[[noreturn]] void trap(const char* what);

/// A global access of `bytes` bytes at an address that is not a multiple of them: a GPU raises
/// CUDA_ERROR_MISALIGNED_ADDRESS, so the launch fails naming the lane, the access (`what`) and the address.
[[noreturn]] void misaligned_access(const void* p, unsigned bytes, const char* what);

/// Every global access of a GPU is naturally aligned; 8- and 16-byte vector accesses are the ones a kernel can get
/// wrong (a view at an odd element offset), and the host would perform them anyway.
inline void check_alignment(const void* p, unsigned bytes, const char* what) {
    if (reinterpret_cast<std::uintptr_t>(p) & (bytes - 1u)) misaligned_access(p, bytes, what);
}

// Warp matrix instructions and cp.async (emu_runtime.cpp), called only through kernels/mma.cuh's wrappers, which
// document the semantics. ldmatrix and mma are collectives of all 32 lanes (file/line: the wrapper's call site, to
// tell a diverged warp from a converged one): every lane deposits its operands, the last to arrive executes the
// instruction for the whole warp before any lane resumes, and each lane takes its own results.
void cp_async_16(void* sharedDst, const void* globalSrc, bool valid);
void cp_async_commit();
void cp_async_wait(int pendingGroups);
void ldmatrix(unsigned* regs, int matrices, bool trans, const void* row, const char* file, int line);
void mma_m16n8k16_bf16(float* d, const unsigned* a, const unsigned* b, const float* c, const char* file, int line);
void mma_m16n8k8_tf32(float* d, const unsigned* a, const unsigned* b, const float* c, const char* file, int line);

/// cvt.rna.tf32.f32: round to the 10 mantissa bits of tf32, to nearest with ties away from zero (add half of the
/// dropped 13 bits' range, then clear them; a carry into the exponent is the correct rounding, up to infinity).
/// A NaN becomes the canonical NaN 0x7fffffff (clearing its low bits could otherwise turn it into an infinity).
inline unsigned float_to_tf32_rna(float v) {
    unsigned b;
    std::memcpy(&b, &v, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return 0x7fffffffu;
    return (b + 0x1000u) & 0xffffe000u;
}

/// float -> bfloat16 bits as the hardware's cvt.rn.bf16.f32: round to nearest, ties to even; a NaN stays a NaN
/// (sign and top payload kept, quiet bit set, as the .NET BFloat16 does; the GPU writes the canonical 0x7FFF,
/// a different NaN with the same meaning).
inline unsigned short float_to_bf16_rn(float v) {
    unsigned b;
    std::memcpy(&b, &v, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((b >> 16) | 0x40u);
    b += 0x7fffu + ((b >> 16) & 1u);
    return static_cast<unsigned short>(b >> 16);
}

inline float bf16_bits_to_float(unsigned short h) {
    unsigned b = static_cast<unsigned>(h) << 16;
    float v;
    std::memcpy(&v, &b, 4);
    return v;
}

// ------------------------------------------------------------------ kernel registry

using Adapter = void (*)(void** args);

struct KernelInfo {
    const char* name;
    Adapter adapter;
    int arity;
    const int* argSizes;
    /// maxThreadsPerBlock of the kernel's __launch_bounds__ (OR1_BOUNDED_KERNEL), 0 where it declares none: a
    /// launch of a larger block is refused, as a GPU refuses it.
    int maxThreads = 0;
};

void register_kernel(const KernelInfo& info);

template <typename T>
using arg_t = std::remove_cv_t<std::remove_reference_t<T>>;

template <typename... A, std::size_t... I>
inline void call_unpacked(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<arg_t<A>*>(args[I])...);
}

template <auto F>
struct KernelAdapter;

template <typename... A, void (*F)(A...)>
struct KernelAdapter<F> {
    static constexpr int arity = sizeof...(A);
    static constexpr int sizes[sizeof...(A) + 1] = {static_cast<int>(sizeof(arg_t<A>))..., 0};
    static void invoke(void** args) { call_unpacked(F, args, std::index_sequence_for<A...>{}); }
};

struct Registrar {
    explicit Registrar(const KernelInfo& info) { register_kernel(info); }
};

template <typename T>
inline unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles of types wider than 8 bytes are not emulated");
    unsigned long long b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
inline T from_bits(unsigned long long b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

template <typename T>
inline T atomic_cas_loop_add(T* address, T value) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "unsupported atomic width");
    using U = std::conditional_t<sizeof(T) == 4, unsigned int, unsigned long long>;
    U* a = reinterpret_cast<U*>(address);
    U old = __atomic_load_n(a, __ATOMIC_RELAXED);
    for (;;) {
        T sum = from_bits<T>(old) + value;
        U desired = 0;
        std::memcpy(&desired, &sum, sizeof(T));
        if (__atomic_compare_exchange_n(a, &old, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return from_bits<T>(old);
    }
}

} // namespace or1emu

/// Registers an extern "C" kernel under its own name (emu build only; nothing under nvcc/NVRTC).
#define OR1_EMU_REGISTER(name)                                                                      \
    static ::or1emu::Registrar or1emu_registrar_##name(::or1emu::KernelInfo{                         \
        #name, &::or1emu::KernelAdapter<&name>::invoke, ::or1emu::KernelAdapter<&name>::arity,       \
        ::or1emu::KernelAdapter<&name>::sizes});

/// OR1_EMU_REGISTER with the maxThreadsPerBlock of the kernel's launch bounds (kernels/common.cuh, OR1_BOUNDED_KERNEL).
#define OR1_EMU_REGISTER_BOUNDED(name, maxThreads)                                                  \
    static_assert((maxThreads) >= 1 && (maxThreads) <= 1024, #name ": launch bounds allow 1 to 1024 threads per block"); \
    static ::or1emu::Registrar or1emu_registrar_##name(::or1emu::KernelInfo{                         \
        #name, &::or1emu::KernelAdapter<&name>::invoke, ::or1emu::KernelAdapter<&name>::arity,       \
        ::or1emu::KernelAdapter<&name>::sizes, (maxThreads)});

/// The first of __launch_bounds__'s arguments: OR1_EMU_MAX_THREADS (256, 2) is 256.
#define OR1_EMU_MAX_THREADS(...) OR1_EMU_FIRST_(__VA_ARGS__, 0)
#define OR1_EMU_FIRST_(first, ...) first

// ------------------------------------------------------------------ built-in variables

#define threadIdx (::or1emu::tl_fiber->tid)
#define blockIdx (::or1emu::tl_blockIdx)
#define blockDim (::or1emu::tl_blockDim)
#define gridDim (::or1emu::tl_gridDim)
static constexpr int warpSize = 32;

// ------------------------------------------------------------------ synchronisation

inline void __syncthreads() { ::or1emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::or1emu::syncwarp(mask); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap() { ::or1emu::trap("__trap() called"); }
inline unsigned __activemask() { return ::or1emu::active_mask(); }

// ------------------------------------------------------------------ warp shuffles and votes

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32) {
    int lane = ::or1emu::tl_fiber->lane;
    int base = lane & ~(width - 1);
    int src = base + (srcLane & (width - 1));
    return ::or1emu::from_bits<T>(::or1emu::warp_exchange(mask, ::or1emu::to_bits(var), src, "__shfl_sync"));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    int lane = ::or1emu::tl_fiber->lane;
    int base = lane & ~(width - 1);
    int src = lane - static_cast<int>(delta);
    if (src < base) src = lane;
    return ::or1emu::from_bits<T>(::or1emu::warp_exchange(mask, ::or1emu::to_bits(var), src, "__shfl_up_sync"));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    int lane = ::or1emu::tl_fiber->lane;
    int base = lane & ~(width - 1);
    int src = lane + static_cast<int>(delta);
    if (src >= base + width) src = lane;
    return ::or1emu::from_bits<T>(::or1emu::warp_exchange(mask, ::or1emu::to_bits(var), src, "__shfl_down_sync"));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32) {
    int lane = ::or1emu::tl_fiber->lane;
    int src = lane ^ laneMask;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return ::or1emu::from_bits<T>(::or1emu::warp_exchange(mask, ::or1emu::to_bits(var), src, "__shfl_xor_sync"));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) { return ::or1emu::warp_ballot(mask, predicate, "__ballot_sync"); }
inline int __any_sync(unsigned mask, int predicate) { return ::or1emu::warp_ballot(mask, predicate, "__any_sync") != 0; }
inline int __all_sync(unsigned mask, int predicate) {
    return (::or1emu::warp_ballot(mask, predicate, "__all_sync") & mask) == (::or1emu::warp_ballot(mask, 1, "__all_sync") & mask);
}

// ------------------------------------------------------------------ atomics (device-wide: real atomics)

inline int atomicAdd(int* a, int v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }
inline float atomicAdd(float* a, float v) { return ::or1emu::atomic_cas_loop_add(a, v); }
inline double atomicAdd(double* a, double v) { return ::or1emu::atomic_cas_loop_add(a, v); }
inline int atomicSub(int* a, int v) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }
inline int atomicExch(int* a, int v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicExch(unsigned* a, unsigned v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }
inline float atomicExch(float* a, float v) {
    unsigned old = __atomic_exchange_n(reinterpret_cast<unsigned*>(a), ::or1emu::to_bits(v) & 0xffffffffu, __ATOMIC_SEQ_CST);
    return ::or1emu::from_bits<float>(old);
}
inline int atomicCAS(int* a, int compare, int v) {
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return compare;
}
inline unsigned atomicCAS(unsigned* a, unsigned compare, unsigned v) {
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return compare;
}
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long compare, unsigned long long v) {
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return compare;
}
template <typename T>
inline T or1emu_atomic_min(T* a, T v) {
    T old = __atomic_load_n(a, __ATOMIC_RELAXED);
    while (v < old && !__atomic_compare_exchange_n(a, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {}
    return old;
}
template <typename T>
inline T or1emu_atomic_max(T* a, T v) {
    T old = __atomic_load_n(a, __ATOMIC_RELAXED);
    while (v > old && !__atomic_compare_exchange_n(a, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {}
    return old;
}
inline int atomicMin(int* a, int v) { return or1emu_atomic_min(a, v); }
inline unsigned atomicMin(unsigned* a, unsigned v) { return or1emu_atomic_min(a, v); }
inline unsigned long long atomicMin(unsigned long long* a, unsigned long long v) { return or1emu_atomic_min(a, v); }
inline int atomicMax(int* a, int v) { return or1emu_atomic_max(a, v); }
inline unsigned atomicMax(unsigned* a, unsigned v) { return or1emu_atomic_max(a, v); }

// ------------------------------------------------------------------ math and bit intrinsics

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float __int_as_float(int x) { return ::or1emu::from_bits<float>(static_cast<unsigned>(x)); }
inline int __float_as_int(float x) { return static_cast<int>(::or1emu::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return ::or1emu::from_bits<float>(x); }
inline unsigned __float_as_uint(float x) { return static_cast<unsigned>(::or1emu::to_bits(x)); }
inline long long __double_as_longlong(double x) { return static_cast<long long>(::or1emu::to_bits(x)); }
inline double __longlong_as_double(long long x) { return ::or1emu::from_bits<double>(static_cast<unsigned long long>(x)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}
template <typename T>
inline T __ldg(const T* p) {
    ::or1emu::check_alignment(p, alignof(T), "__ldg");
    return *p;
}
/// Address-space predicates: kernels only ever see global memory through their pointer arguments here.
inline unsigned __isGlobal(const void*) { return 1; }

// ------------------------------------------------------------------ bfloat16 with CUDA's names and semantics
// For code written against cuda_bf16.h: the same conversions (round to nearest even; NaN stays NaN) on the host.
// The kernels of kernels/*.cu use common.cuh's bf16 / from_f32, which share these conversions.

struct __nv_bfloat16 {
    unsigned short __x;
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
inline __nv_bfloat16 __float2bfloat16_rn(float v) { return __nv_bfloat16{::or1emu::float_to_bf16_rn(v)}; }
inline __nv_bfloat16 __float2bfloat16(float v) { return __float2bfloat16_rn(v); }
inline float __bfloat162float(__nv_bfloat16 v) { return ::or1emu::bf16_bits_to_float(v.__x); }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) { return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)}; }
inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }
