// mma.cuh — the warp matrix instructions (mma.sync, ldmatrix) and cp.async, the only way kernels use them.
// Included at the end of common.cuh. Under nvcc/NVRTC (OR1_CUDA) each wrapper is one inline PTX instruction; on
// the host each calls the emulation in kernels/emu (::or1emu), which executes it with the PTX ISA's semantics and
// refuses what the hardware refuses (see "Warp matrix instructions" in emu/emu_runtime.cpp):
//   - mma / ldmatrix are .sync.aligned: all 32 lanes of the warp execute the same instruction together. A lane that
//     has exited, a lane of a partial warp that does not exist, or lanes at different mma/ldmatrix call sites (a
//     diverged warp) fail the launch, naming the kernel, block, warp, lane and instruction.
//   - ldmatrix row addresses: 16-byte aligned, inside shared memory (the block's dynamic shared memory or a static
//     __shared__ array).
//   - cp.async: destination in shared memory, source outside it, both 16-byte aligned. The copy is asynchronous:
//     at issue the destination is filled with 0xFF bytes (NaN as fp32 or bf16) and the bytes land only at the
//     cp_async_wait<N> that retires its group, so reading before waiting shows NaN, as stale data would on a GPU.
//     A copy still pending when its thread exits fails the launch.
// Layouts of the fragments (PTX ISA, "Matrix fragments for mma.m16n8k16 with floating point type",
// "Matrix fragments for mma.m16n8k8" (.tf32), "Warp-level matrix load instruction: ldmatrix"); group = lane / 4,
// t = lane % 4:
//   m16n8k16 bf16  A 16x16: a0..a7 (two bf16 per b32 register, lower index in the low half); row group for
//                  a0,a1,a4,a5 and group + 8 for a2,a3,a6,a7; column 2t + (i & 1), + 8 for a4..a7.
//                  B 16x8: b0..b3; row (k) 2t + (i & 1), + 8 for b2,b3; column group.
//                  C/D 16x8 fp32: c0..c3; row group (c0,c1) / group + 8 (c2,c3); column 2t + (i & 1).
//   m16n8k8 tf32   A 16x8: a0..a3; row group (a0,a2) / group + 8 (a1,a3); column t (a0,a1) / t + 4 (a2,a3).
//                  B 8x8: b0,b1; row t (b0) / t + 4 (b1); column group.   C/D as above.
//   ldmatrix       lanes 8i..8i+7 give the row addresses of matrix i (.x1: lanes 0-7 used, .x2: 0-15, .x4: all);
//                  lane l receives in ri row l / 4, columns 2(l % 4), 2(l % 4) + 1 of matrix i (.trans: of its
//                  transpose), the lower column in the low half.
// Shared addresses go to the instructions as 32-bit .shared addresses (__cvta_generic_to_shared, which NVRTC knows
// without headers). The asm statements that read or write memory carry a "memory" clobber, so the compiler keeps
// ordinary loads and stores of shared memory on their side of them.
#pragma once

#if defined(OR1_CUDA)
#define OR1_MMA_SITE
#define OR1_MMA_SITE_ARGS
static __device__ __forceinline__ unsigned or1_shared_address(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
#else
// On the host the warp instructions take their call site (file, line: g++ evaluates __builtin_FILE/LINE in a
// default argument at the caller), so lanes that reach two different mma or ldmatrix statements at once, which a
// .aligned instruction forbids, are told apart and reported as a diverged warp.
#define OR1_MMA_SITE , const char* or1_site_file = __builtin_FILE(), int or1_site_line = __builtin_LINE()
#define OR1_MMA_SITE_ARGS or1_site_file, or1_site_line
#endif

// ------------------------------------------------------------------ cp.async (sm_80+): global -> shared, no registers

/// cp.async.cg.shared.global, 16 bytes: starts copying gmemSrc[0..16) to smemDst[0..16). Both 16-byte aligned;
/// smemDst in shared memory. The bytes are there after the cp_async_wait that retires this copy's group, and for
/// other threads only after a __syncthreads that follows that wait.
static __device__ __forceinline__ void cp_async_16(void* smemDst, const void* gmemSrc) {
#if defined(OR1_CUDA)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(or1_shared_address(smemDst)), "l"(gmemSrc) : "memory");
#else
    ::or1emu::cp_async_16(smemDst, gmemSrc, true);
#endif
}

/// cp.async with src-size 16 (valid) or 0 (!valid: the 16 destination bytes are zero-filled and gmemSrc is not
/// read; it must still be a valid, 16-byte-aligned global address, e.g. the tile's base).
static __device__ __forceinline__ void cp_async_16_zfill(void* smemDst, const void* gmemSrc, bool valid) {
#if defined(OR1_CUDA)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(or1_shared_address(smemDst)), "l"(gmemSrc),
                 "r"(valid ? 16 : 0)
                 : "memory");
#else
    ::or1emu::cp_async_16(smemDst, gmemSrc, valid);
#endif
}

/// cp.async.commit_group: the copies this thread issued since the last commit become one group (possibly empty).
static __device__ __forceinline__ void cp_async_commit() {
#if defined(OR1_CUDA)
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#else
    ::or1emu::cp_async_commit();
#endif
}

/// cp.async.wait_group N: waits until at most N of this thread's committed groups are pending (N = 0: all of them;
/// copies not yet committed are not waited for).
template <int N>
static __device__ __forceinline__ void cp_async_wait() {
    static_assert(N >= 0, "cp.async.wait_group takes a non-negative count");
#if defined(OR1_CUDA)
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#else
    ::or1emu::cp_async_wait(N);
#endif
}

// ------------------------------------------------------------------ ldmatrix.sync.aligned.m8n8.xN[.trans].shared.b16

static __device__ __forceinline__ void ldmatrix_x1(unsigned& r0, const void* smemRow OR1_MMA_SITE) {
#if defined(OR1_CUDA)
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r0) : "r"(or1_shared_address(smemRow)) : "memory");
#else
    unsigned r[1];
    ::or1emu::ldmatrix(r, 1, false, smemRow, OR1_MMA_SITE_ARGS);
    r0 = r[0];
#endif
}

static __device__ __forceinline__ void ldmatrix_x2(unsigned& r0, unsigned& r1, const void* smemRow OR1_MMA_SITE) {
#if defined(OR1_CUDA)
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r0), "=r"(r1) : "r"(or1_shared_address(smemRow)) : "memory");
#else
    unsigned r[2];
    ::or1emu::ldmatrix(r, 2, false, smemRow, OR1_MMA_SITE_ARGS);
    r0 = r[0];
    r1 = r[1];
#endif
}

static __device__ __forceinline__ void ldmatrix_x4(unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3, const void* smemRow OR1_MMA_SITE) {
#if defined(OR1_CUDA)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(or1_shared_address(smemRow))
                 : "memory");
#else
    unsigned r[4];
    ::or1emu::ldmatrix(r, 4, false, smemRow, OR1_MMA_SITE_ARGS);
    r0 = r[0];
    r1 = r[1];
    r2 = r[2];
    r3 = r[3];
#endif
}

static __device__ __forceinline__ void ldmatrix_x1_trans(unsigned& r0, const void* smemRow OR1_MMA_SITE) {
#if defined(OR1_CUDA)
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r0) : "r"(or1_shared_address(smemRow)) : "memory");
#else
    unsigned r[1];
    ::or1emu::ldmatrix(r, 1, true, smemRow, OR1_MMA_SITE_ARGS);
    r0 = r[0];
#endif
}

static __device__ __forceinline__ void ldmatrix_x2_trans(unsigned& r0, unsigned& r1, const void* smemRow OR1_MMA_SITE) {
#if defined(OR1_CUDA)
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r0), "=r"(r1)
                 : "r"(or1_shared_address(smemRow))
                 : "memory");
#else
    unsigned r[2];
    ::or1emu::ldmatrix(r, 2, true, smemRow, OR1_MMA_SITE_ARGS);
    r0 = r[0];
    r1 = r[1];
#endif
}

static __device__ __forceinline__ void ldmatrix_x4_trans(unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3,
                                                         const void* smemRow OR1_MMA_SITE) {
#if defined(OR1_CUDA)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(or1_shared_address(smemRow))
                 : "memory");
#else
    unsigned r[4];
    ::or1emu::ldmatrix(r, 4, true, smemRow, OR1_MMA_SITE_ARGS);
    r0 = r[0];
    r1 = r[1];
    r2 = r[2];
    r3 = r[3];
#endif
}

// ------------------------------------------------------------------ mma.sync

/// D (16x8 fp32) = A (16x16 bf16, row) . B (16x8 bf16, col) + C: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32.
/// d may be the same array as c. Registers a[i] hold a(2i) in the low and a(2i+1) in the high half (pack_bf16x2's
/// bits), b likewise.
static __device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                                         const float (&c)[4] OR1_MMA_SITE) {
#if defined(OR1_CUDA)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
    ::or1emu::mma_m16n8k16_bf16(d, a, b, c, OR1_MMA_SITE_ARGS);
#endif
}

/// D (16x8 fp32) = A (16x8 tf32, row) . B (8x8 tf32, col) + C: mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32.
/// d may be the same array as c. The operands are fp32 bit patterns of which the tensor core uses the top 19 bits
/// (sign, exponent, 10 mantissa bits). The emulation truncates: it clears the low 13 bits of each operand (a NaN
/// stays a NaN) and so matches a GPU exactly when the operands are tf32 values already (float_to_tf32, or data
/// rounded on the host); what a GPU does with nonzero low bits the ISA leaves unspecified, so kernels that care
/// convert explicitly.
static __device__ __forceinline__ void mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                                        const float (&c)[4] OR1_MMA_SITE) {
#if defined(OR1_CUDA)
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
    ::or1emu::mma_m16n8k8_tf32(d, a, b, c, OR1_MMA_SITE_ARGS);
#endif
}

/// cvt.rna.tf32.f32: v rounded to tf32 (10 mantissa bits) to nearest, ties away from zero, as fp32 bits with the
/// low 13 bits zero: the operand form mma_m16n8k8_tf32 takes. Overflow rounds to infinity; a NaN stays a NaN.
static __device__ __forceinline__ unsigned float_to_tf32(float v) {
#if defined(OR1_CUDA)
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
    return r;
#else
    return ::or1emu::float_to_tf32_rna(v);
#endif
}

#undef OR1_MMA_SITE
#undef OR1_MMA_SITE_ARGS
