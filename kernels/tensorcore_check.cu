// tensorcore_check.cu — probe kernels for the warp matrix instructions of mma.cuh (mma.sync, ldmatrix, cp.async), for
// tests/OR1.Tests/Emu/TensorCoreInstructionTests.cs, which runs them on the emulator and on a GPU and checks them
// against the PTX ISA's fragment tables, written out there. Every kernel is one warp (block = 32 threads): the
// fragments are per warp. No op launches these; they exist to pin the instructions' semantics down.
#include "common.cuh"

// ------------------------------------------------------------------ raw fragments through mma

/// One mma.m16n8k16 bf16 per block (grid = experiments, block = 32): lane l of block e takes its registers as given,
/// a = a[(e * 32 + l) * 4 ..], b = b[(e * 32 + l) * 2 ..], c = c[(e * 32 + l) * 4 ..], and stores d likewise. The
/// test writes fragments whose values encode their (row, column) by the ISA's tables and reads back the product.
/// fault (refusal probes; the emulator fails the launch, a GPU's behaviour is undefined): 0 none, 1 lane 31 returns
/// before the mma, 2 lanes 16-31 execute a different mma statement than lanes 0-15 (a diverged warp).
OR1_BOUNDED_KERNEL(tc_probe_mma_bf16, (32), (const unsigned* __restrict__ a, const unsigned* __restrict__ b, const float* __restrict__ c,
                                             float* __restrict__ d, int fault)) {
    int lane = threadIdx.x;
    long long at = static_cast<long long>(blockIdx.x) * 32 + lane;
    if (fault == 1 && lane == 31) return;
    unsigned ra[4], rb[2];
    float rc[4], rd[4];
    for (int i = 0; i < 4; i++) ra[i] = a[at * 4 + i];
    for (int i = 0; i < 2; i++) rb[i] = b[at * 2 + i];
    for (int i = 0; i < 4; i++) rc[i] = c[at * 4 + i];
    if (fault == 2 && lane >= 16)
        mma_m16n8k16_bf16(rd, ra, rb, rc);
    else
        mma_m16n8k16_bf16(rd, ra, rb, rc);
    for (int i = 0; i < 4; i++) d[at * 4 + i] = rd[i];
}

/// One mma.m16n8k8 tf32 per block, registers as given: a (4 per lane), b (2), c (4), d (4), as tc_probe_mma_bf16.
OR1_BOUNDED_KERNEL(tc_probe_mma_tf32, (32), (const unsigned* __restrict__ a, const unsigned* __restrict__ b, const float* __restrict__ c,
                                             float* __restrict__ d)) {
    int lane = threadIdx.x;
    long long at = static_cast<long long>(blockIdx.x) * 32 + lane;
    unsigned ra[4], rb[2];
    float rc[4], rd[4];
    for (int i = 0; i < 4; i++) ra[i] = a[at * 4 + i];
    for (int i = 0; i < 2; i++) rb[i] = b[at * 2 + i];
    for (int i = 0; i < 4; i++) rc[i] = c[at * 4 + i];
    mma_m16n8k8_tf32(rd, ra, rb, rc);
    for (int i = 0; i < 4; i++) d[at * 4 + i] = rd[i];
}

// ------------------------------------------------------------------ ldmatrix

/// Stages four 8x8 b16 matrices (matrices[m * 64 + r * 8 + c]) in a static __shared__ tile with 48-byte rows (the
/// 16 padding bytes of each row hold 0xFFFF, so a read outside a row shows), then runs the six ldmatrix shapes,
/// lane l giving the address of row l % 8 of matrix l / 8. out[(v * 32 + l) * 4 + i] = register i of lane l for
/// shape v = x1, x2, x4, x1.trans, x2.trans, x4.trans (registers a shape does not have: 0). Lanes whose address the
/// shape ignores (8-31 for .x1, 16-31 for .x2) give row 7 of matrix 3, a valid address that would show if read.
/// misalignBytes moves every row address (refusal probe: 8 misaligns them); fromGlobal = 1 gives global addresses.
OR1_BOUNDED_KERNEL(tc_probe_ldmatrix, (32), (const unsigned short* __restrict__ matrices, unsigned* __restrict__ out, int misalignBytes,
                                             int fromGlobal)) {
    constexpr int kStride = 24; // elements per row: 48 bytes, a multiple of 16
    // __align__ first: in the emulator's expansion (alignas(16) static thread_local) an attribute cannot follow them.
    __align__(16) __shared__ unsigned short tile[4 * 8 * kStride];
    int lane = threadIdx.x;
    for (int i = lane; i < 4 * 8 * kStride; i += 32) {
        int row = i / kStride, col = i % kStride;
        tile[i] = col < 8 ? matrices[row * 8 + col] : static_cast<unsigned short>(0xFFFF);
    }
    __syncwarp();
    const unsigned char* mine = reinterpret_cast<const unsigned char*>(tile + (lane / 8 * 8 + lane % 8) * kStride) + misalignBytes;
    if (fromGlobal) mine = reinterpret_cast<const unsigned char*>(matrices + lane * 8);
    const void* decoy = tile + (3 * 8 + 7) * kStride;
    unsigned r[6][4] = {};
    ldmatrix_x1(r[0][0], lane < 8 ? static_cast<const void*>(mine) : decoy);
    ldmatrix_x2(r[1][0], r[1][1], lane < 16 ? static_cast<const void*>(mine) : decoy);
    ldmatrix_x4(r[2][0], r[2][1], r[2][2], r[2][3], mine);
    ldmatrix_x1_trans(r[3][0], lane < 8 ? static_cast<const void*>(mine) : decoy);
    ldmatrix_x2_trans(r[4][0], r[4][1], lane < 16 ? static_cast<const void*>(mine) : decoy);
    ldmatrix_x4_trans(r[5][0], r[5][1], r[5][2], r[5][3], mine);
    for (int v = 0; v < 6; v++)
        for (int i = 0; i < 4; i++) out[(v * 32 + lane) * 4 + i] = r[v][i];
}

// ------------------------------------------------------------------ cp.async

/// cp.async rules on 64 floats of dynamic shared memory (256 bytes), one warp.
/// mode 0: lanes 0-3 copy src[0..16) in group 0, chunk 2 with src-size 0 (zero-filled), and src[16..32) in group 1;
///         after cp_async_wait<1> + barrier, dst[0..16) = the shared copy of group 0; after cp_async_wait<0> +
///         barrier, dst[16..32) = that of group 1.
/// mode 1: mode 0, and between the two waits dst[32..48) = group 1's destination, read before its wait: NaN on the
///         emulator (poisoned until the wait), stale bytes on a GPU (so the test checks it on the emulator only).
/// Refusal probes (lane 0 alone; the emulator fails the launch): 2 destination in global memory, 3 destination not
/// 16-byte aligned, 4 source not 16-byte aligned, 5 the thread exits with a committed copy never waited for,
/// 6 source in shared memory.
OR1_BOUNDED_KERNEL(tc_probe_cp_async, (32), (const float* __restrict__ src, float* __restrict__ dst, int mode)) {
    OR1_DYNAMIC_SHARED(float, s);
    int lane = threadIdx.x;
    if (mode >= 2) {
        if (lane != 0) return;
        if (mode == 2) cp_async_16(dst, src);
        if (mode == 3) cp_async_16(s + 2, src);
        if (mode == 4) cp_async_16(s, src + 1);
        if (mode == 5) cp_async_16(s, src);
        if (mode == 6) cp_async_16(s, s + 16);
        cp_async_commit();
        if (mode != 5) cp_async_wait<0>();
        return;
    }
    if (lane < 4) cp_async_16_zfill(s + 4 * lane, src + 4 * lane, lane != 2);
    cp_async_commit();
    if (lane < 4) cp_async_16(s + 16 + 4 * lane, src + 16 + 4 * lane);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (lane < 16) dst[lane] = s[lane];
    if (mode == 1 && lane < 16) dst[32 + lane] = s[16 + lane];
    // Every thread's early read comes before any thread's wait for group 1: lane 1 reads bytes that lane 0's copy
    // writes, and the emulator performs a copy at its own thread's wait.
    __syncthreads();
    cp_async_wait<0>();
    __syncthreads();
    if (lane < 16) dst[16 + lane] = s[16 + lane];
}

// ------------------------------------------------------------------ whole products

/// D (16x8 fp32, row-major) = A (16x16 bf16, row-major) . B + C (16x8 fp32, row-major), one warp: A and B staged in
/// dynamic shared memory by cp.async (768 bytes: A at 0, B at 512; A in group 0, B in group 1), the A fragment by
/// ldmatrix.x4, B by ldmatrix.x2.trans from B stored [k][n] (bLayout 0: 16 rows of 8) or by ldmatrix.x2 from B
/// stored transposed [n][k] (bLayout 1: 8 rows of 16), one mma.m16n8k16. earlyRead = 1 loads B's fragment before
/// waiting for B's group (the missing-wait probe: every output is NaN on the emulator).
OR1_BOUNDED_KERNEL(tc_matmul_bf16, (32), (const bf16* __restrict__ A, const bf16* __restrict__ B, const float* __restrict__ C,
                                          float* __restrict__ D, int bLayout, int earlyRead)) {
    OR1_DYNAMIC_SHARED(bf16, smem);
    bf16* as = smem;       // 16 x 16
    bf16* bs = smem + 256; // 16 x 8 or 8 x 16
    int lane = threadIdx.x, group = lane >> 2, t = lane & 3;
    cp_async_16(as + lane * 8, A + lane * 8); // 32 chunks of 16 bytes: one per lane
    cp_async_commit();
    if (lane < 16) cp_async_16(bs + lane * 8, B + lane * 8);
    cp_async_commit();
    cp_async_wait<1>(); // this thread's A chunk has landed ...
    __syncthreads();    // ... and every thread's
    unsigned a[4], b[2];
    {
        // Matrix i = lane / 8 of the x4: rows 8 (i % 2) .. + 7, columns 8 (i / 2) .. + 7, i.e. a0a1, a2a3, a4a5, a6a7.
        int i = lane >> 3, r = lane & 7;
        ldmatrix_x4(a[0], a[1], a[2], a[3], as + (r + 8 * (i & 1)) * 16 + 8 * (i >> 1));
    }
    if (!earlyRead) {
        cp_async_wait<0>();
        __syncthreads();
    }
    if (bLayout == 0) {
        // Matrix m = k rows 8m .. 8m + 7 (lane l < 16 gives row k = l); .trans hands lane l (k = 2t, 2t + 1; n = group).
        ldmatrix_x2_trans(b[0], b[1], bs + (lane & 15) * 8);
    } else {
        // Matrix m = columns k 8m .. 8m + 7 of the n rows (lane l < 16 gives row n = l % 8 of matrix l / 8).
        int m = (lane >> 3) & 1, n = lane & 7;
        ldmatrix_x2(b[0], b[1], bs + n * 16 + 8 * m);
    }
    if (earlyRead) {
        cp_async_wait<0>();
        __syncthreads();
    }
    float c[4], d[4];
    for (int i = 0; i < 4; i++) c[i] = C[(group + 8 * (i >> 1)) * 8 + 2 * t + (i & 1)];
    mma_m16n8k16_bf16(d, a, b, c);
    for (int i = 0; i < 4; i++) D[(group + 8 * (i >> 1)) * 8 + 2 * t + (i & 1)] = d[i];
}

/// D (16x8 fp32) = A (16x8 fp32, row-major) . B (8x8 fp32, [k][n]) + C, one warp, one mma.m16n8k8 tf32: A and B
/// staged by cp.async (768 bytes of dynamic shared memory: A at 0, B at 512), fragments read from shared memory by
/// the ISA's table. convert = 1 rounds each operand with float_to_tf32 (cvt.rna.tf32.f32); 0 passes the fp32 bits
/// as they are (the tensor core then uses their top 19 bits).
OR1_BOUNDED_KERNEL(tc_matmul_tf32, (32), (const float* __restrict__ A, const float* __restrict__ B, const float* __restrict__ C,
                                          float* __restrict__ D, int convert)) {
    OR1_DYNAMIC_SHARED(float, smem);
    float* as = smem;       // 16 x 8
    float* bs = smem + 128; // 8 x 8
    int lane = threadIdx.x, group = lane >> 2, t = lane & 3;
    cp_async_16(as + lane * 4, A + lane * 4);
    if (lane < 16) cp_async_16(bs + lane * 4, B + lane * 4);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    unsigned a[4], b[2];
    for (int i = 0; i < 4; i++) {
        float v = as[(group + 8 * (i & 1)) * 8 + t + 4 * (i >> 1)];
        a[i] = convert ? float_to_tf32(v) : __float_as_uint(v);
    }
    for (int i = 0; i < 2; i++) {
        float v = bs[(t + 4 * i) * 8 + group];
        b[i] = convert ? float_to_tf32(v) : __float_as_uint(v);
    }
    float c[4], d[4];
    for (int i = 0; i < 4; i++) c[i] = C[(group + 8 * (i >> 1)) * 8 + 2 * t + (i & 1)];
    mma_m16n8k8_tf32(d, a, b, c);
    for (int i = 0; i < 4; i++) D[(group + 8 * (i >> 1)) * 8 + 2 * t + (i & 1)] = d[i];
}
