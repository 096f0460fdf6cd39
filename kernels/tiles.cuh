// tiles.cuh — a small tile vocabulary over the mma.sync m16n8k16 bf16 fragments (in the spirit of ThunderKittens'
// st/rt tiles): bf16 tiles in shared memory filled by cp.async, the A and B operands loaded from them by ldmatrix,
// fp32 accumulator tiles in registers with the row max/sum/exp an online softmax needs. The lane arithmetic of the
// PTX ISA's fragment layouts lives here and nowhere else (the emulator's layout tests cover it, see
// tests/OR1.Tests/Emu/TensorCoreInstructionTests.cs), so the kernels above read like their algorithms.
//
// Layouts (PTX ISA, "Matrix fragments for mma.m16n8k16 with floating point type"), group = lane / 4, t = lane % 4:
//   accumulator C/D 16x8 fp32, c[0..3]: row group (c0, c1) / group + 8 (c2, c3), column 2t + (i & 1);
//   A 16x16 bf16 in four b32 registers: rows group / group + 8, columns 2t, 2t + 1 (+ 8 for registers 2, 3);
//   B 16x8 bf16 in two b32 registers: k rows 2t, 2t + 1 (+ 8 for register 1), column n = group.
#pragma once
#include "common.cuh"

// ------------------------------------------------------------------ shared tiles

/// A bf16 tile of R x C in shared memory, row-major with a row stride of C + 8 elements. The 16 bytes of padding
/// put consecutive rows 16 bytes apart modulo 128, so the eight 16-byte rows an ldmatrix reads fall in eight
/// different bank groups (no conflicts) for every C that is a multiple of 8, power of two or not.
template <int R, int C>
struct SharedTile {
    static_assert(C % 16 == 0, "a tile's columns are whole 16-column mma steps");
    static constexpr int kRows = R;
    static constexpr int kCols = C;
    static constexpr int kStride = C + 8;
    static constexpr int kElements = R * kStride;
    static constexpr int kBytes = kElements * 2;
    bf16* base;
    __device__ __forceinline__ bf16* at(int r, int c) const { return base + r * kStride + c; }
};

/// Starts copying rows [0, R) of a global bf16 matrix (row pitch `pitch` elements) into `tile` with cp.async: rows at
/// or past `rows` and columns at or past `cols` (a multiple of 8) are zero-filled and their source is not read, so
/// a tile may hang over the end of a sequence or a padded head dimension. `global` must stay a valid address even
/// when no row is (cp.async with a zero source size still takes one). Every thread of the block takes part; the
/// caller commits the group and waits for it.
template <int R, int C>
static __device__ __forceinline__ void tile_load_async(SharedTile<R, C> tile, const bf16* global, long long pitch, int rows,
                                                        int cols, int thread, int threads) {
    constexpr int kChunks = C / 8; // 16-byte chunks per row
    for (int i = thread; i < R * kChunks; i += threads) {
        int r = i / kChunks, c = (i % kChunks) * 8;
        bool valid = r < rows && c < cols;
        cp_async_16_zfill(tile.at(r, c), valid ? global + r * pitch + c : global, valid);
    }
}

/// One step of a two-stage cp.async pipeline, at the top of step j of `steps`: starts loading step j + 1's tiles
/// (`load(j + 1, buffer)` into the other buffer) and waits for step j's, which an earlier call (or the prologue)
/// committed; the last step only waits. The __syncthreads publishes every thread's copies to the block. The caller
/// ends each step with a __syncthreads too, before the next call overwrites the buffer it read.
template <typename Load>
static __device__ __forceinline__ void pipeline_step(int j, int steps, Load load) {
    if (j + 1 < steps) {
        load(j + 1, (j + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
    } else {
        cp_async_wait<0>();
    }
    __syncthreads();
}

// ------------------------------------------------------------------ operand fragments

/// The A operand of one m16n8k16: the 16x16 block at (row, col) of a row-major tile. ldmatrix.x4 takes matrix i
/// (i = lane / 8) as rows row + 8 (i % 2) .. + 7, columns col + 8 (i / 2) .. + 7, which lands the ISA's a0..a7.
template <int R, int C>
static __device__ __forceinline__ void load_a(unsigned (&a)[4], SharedTile<R, C> tile, int row, int col, int lane) {
    int i = lane >> 3, r = lane & 7;
    ldmatrix_x4(a[0], a[1], a[2], a[3], tile.at(row + r + 8 * (i & 1), col + 8 * (i >> 1)));
}

/// B operands of two m16n8k16 with n tiles [n, n + 8) and [n + 8, n + 16), k = [k, k + 16), from a tile stored with
/// n along its rows and k contiguous (K for S = Q K^T, V for dP = dO V^T): B[kk][nn] = tile[n + nn][k + kk].
/// ldmatrix (no transpose) gives lane l the row l / 4 = group, columns 2t, 2t + 1: exactly b0 b1.
template <int R, int C>
static __device__ __forceinline__ void load_b_nk(unsigned (&b0)[2], unsigned (&b1)[2], SharedTile<R, C> tile, int n, int k, int lane) {
    int i = lane >> 3, r = lane & 7;
    ldmatrix_x4(b0[0], b0[1], b1[0], b1[1], tile.at(n + r + 8 * (i >> 1), k + 8 * (i & 1)));
}

/// B operands of two m16n8k16 with n tiles [n, n + 8) and [n + 8, n + 16), k = [k, k + 16), from a tile stored with
/// k along its rows and n contiguous (V for O = P V, dO for dV = P^T dO, Q and K for dK and dQ): B[kk][nn] =
/// tile[k + kk][n + nn]. ldmatrix.trans gives lane l the transposed rows: tile[k + 2t][n + group], tile[k + 2t + 1][..].
template <int R, int C>
static __device__ __forceinline__ void load_b_kn(unsigned (&b0)[2], unsigned (&b1)[2], SharedTile<R, C> tile, int k, int n, int lane) {
    int i = lane >> 3, r = lane & 7;
    ldmatrix_x4_trans(b0[0], b0[1], b1[0], b1[1], tile.at(k + r + 8 * (i & 1), n + 8 * (i >> 1)));
}

// ------------------------------------------------------------------ register tiles

/// A 16 x N fp32 accumulator owned by one warp: N / 8 mma C fragments.
template <int N>
struct AccTile {
    static_assert(N % 8 == 0, "whole n8 fragments");
    static constexpr int kFragments = N / 8;
    float c[kFragments][4];

    __device__ __forceinline__ void zero() {
#pragma unroll
        for (int j = 0; j < kFragments; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) c[j][e] = 0.f;
    }

    /// Row of element e of any fragment, relative to the tile: group, or group + 8 for e >= 2.
    static __device__ __forceinline__ int row(int lane, int e) { return (lane >> 2) + 8 * (e >> 1); }

    /// Column of element e of fragment j, relative to the tile.
    static __device__ __forceinline__ int col(int lane, int j, int e) { return 8 * j + 2 * (lane & 3) + (e & 1); }
};

/// acc[2j], acc[2j + 1] += a * B for the two n tiles of one 16-column step.
template <int N>
static __device__ __forceinline__ void mma_pair(AccTile<N>& acc, int j, const unsigned (&a)[4], const unsigned (&b0)[2],
                                                const unsigned (&b1)[2]) {
    mma_m16n8k16_bf16(acc.c[2 * j], a, b0, acc.c[2 * j]);
    mma_m16n8k16_bf16(acc.c[2 * j + 1], a, b1, acc.c[2 * j + 1]);
}

/// The A operand for keys/columns [16 s, 16 s + 16) made from an accumulator's fragments 2s and 2s + 1, rounded to
/// bf16: a C fragment's (row, column) pairs are the A fragment's for the same 16 columns (FlashAttention-2 keeps P in
/// registers this way rather than going through shared memory).
template <int N>
static __device__ __forceinline__ void acc_to_a(unsigned (&a)[4], const AccTile<N>& acc, int s) {
    const float* lo = acc.c[2 * s];
    const float* hi = acc.c[2 * s + 1];
    a[0] = pack_bf16x2(lo[0], lo[1]).bits;
    a[1] = pack_bf16x2(lo[2], lo[3]).bits;
    a[2] = pack_bf16x2(hi[0], hi[1]).bits;
    a[3] = pack_bf16x2(hi[2], hi[3]).bits;
}

/// The maximum of each of the lane's two rows (group, group + 8) over the tile: the four lanes of a group hold a
/// row between them, so two xor-shuffles within the quad finish it.
template <int N>
static __device__ __forceinline__ void row_max(const AccTile<N>& acc, float (&m)[2]) {
    m[0] = m[1] = OR1_NEG_INF;
#pragma unroll
    for (int j = 0; j < AccTile<N>::kFragments; j++) {
        m[0] = fmaxf(m[0], fmaxf(acc.c[j][0], acc.c[j][1]));
        m[1] = fmaxf(m[1], fmaxf(acc.c[j][2], acc.c[j][3]));
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        m[r] = fmaxf(m[r], __shfl_xor_sync(OR1_FULL_MASK, m[r], 1));
        m[r] = fmaxf(m[r], __shfl_xor_sync(OR1_FULL_MASK, m[r], 2));
    }
}

/// The sum of each of the lane's two rows over the tile (quad-reduced as row_max).
template <int N>
static __device__ __forceinline__ void row_sum(const AccTile<N>& acc, float (&s)[2]) {
    s[0] = s[1] = 0.f;
#pragma unroll
    for (int j = 0; j < AccTile<N>::kFragments; j++) {
        s[0] += acc.c[j][0] + acc.c[j][1];
        s[1] += acc.c[j][2] + acc.c[j][3];
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        s[r] += __shfl_xor_sync(OR1_FULL_MASK, s[r], 1);
        s[r] += __shfl_xor_sync(OR1_FULL_MASK, s[r], 2);
    }
}

/// Multiplies each of the lane's two rows by its factor.
template <int N>
static __device__ __forceinline__ void row_scale(AccTile<N>& acc, const float (&f)[2]) {
#pragma unroll
    for (int j = 0; j < AccTile<N>::kFragments; j++) {
        acc.c[j][0] *= f[0];
        acc.c[j][1] *= f[0];
        acc.c[j][2] *= f[1];
        acc.c[j][3] *= f[1];
    }
}
