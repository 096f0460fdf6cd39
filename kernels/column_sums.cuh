// column_sums.cuh — deterministic column sums of a [rows, width] matrix of per-element terms without atomics: the
// bias gradient (the terms are dOut) and RMSNorm's weight gradient (dy * x / rms), both fp32 parameter gradients.
//
// One thread per column walking every row reads 64-128 contiguous bytes per warp and row and fills width / 128
// blocks: a few percent of the bandwidth. Instead, two stages:
//  1. column_partials (here, called by each family's stage-1 kernel): a block owns a fixed range of rows and a tile
//     of 32 packs of columns (vector_io.cuh). Its warps are row lanes: warp w takes rows r0 + w, r0 + w + 8, ...,
//     and its lane l the 16-byte pack l of each such row, so a warp reads 512 contiguous bytes per row. The block
//     adds its row lanes in lane order and writes one row of fp32 partial sums into scratch [row blocks, stride].
//  2. column_partials_reduce (reduce.cu) adds each column's partials in row-block order and adds the total to the
//     gradient (which accumulates).
// Every addition happens in an order fixed by the shape and the launcher's row partition (a function of the shape
// alone), so the sums are bit-identical from run to run, under any schedule, and on the packed and the scalar path.
#pragma once
#include "common.cuh"
#include "vector_io.cuh"

#define COLUMN_SUM_LANES 8                          // row lanes (warps) of a stage-1 block
#define COLUMN_SUM_THREADS (32 * COLUMN_SUM_LANES)  // a stage-1 block: 32 column packs x 8 row lanes

/// Stage 1 for the block (blockIdx.x = row block of rowsPerBlock rows, blockIdx.y = column tile of 32 packs):
/// partials[blockIdx.x * stride + c] = sum over the block's rows r of term(r, c), for the tile's columns c < width
/// (and 0 for the columns from width up to the end of the last pack). stride is a multiple of 8, so every partial
/// pack is 16-byte aligned whatever the width.
/// packed: width is a multiple of N and every operand's rows start 16-byte aligned (rows_packable, checked by the
/// stage-1 kernel); then pack_terms(r, c) gives the N terms of columns c .. c + N - 1 of row r from 16-byte loads,
/// otherwise term(r, c) gives one term from scalar loads. Both paths add in the same order, so give the same bits.
/// Launch: grid (row blocks, ceil(width / (32 N))), blocks of COLUMN_SUM_THREADS threads.
template <typename S, typename PackTerms, typename Term>
static __device__ __forceinline__ void column_partials(int rows, int width, int rowsPerBlock, bool packed, float* __restrict__ partials,
                                                       int stride, PackTerms pack_terms, Term term) {
    constexpr int N = Pack<S>::N;
    // [row lane][element of the pack][lane]: a warp writes and reads 32 consecutive words, no bank conflicts.
    __shared__ float laneSums[COLUMN_SUM_LANES][N][32];
    int lane = threadIdx.x & 31, rowLane = threadIdx.x >> 5;
    int c0 = (blockIdx.y * 32 + lane) * N;
    int r0 = blockIdx.x * rowsPerBlock, r1 = min(rows, r0 + rowsPerBlock);
    float acc[N];
#pragma unroll
    for (int k = 0; k < N; k++) acc[k] = 0.f;
    if (c0 < width) {
        if (packed) {
            // Two rows' loads in flight before the first add needs one; the adds keep the row order.
            int r = r0 + rowLane;
            for (; r + COLUMN_SUM_LANES < r1; r += 2 * COLUMN_SUM_LANES) {
                Pack<S> t0 = pack_terms(r, c0), t1 = pack_terms(r + COLUMN_SUM_LANES, c0);
#pragma unroll
                for (int k = 0; k < N; k++) acc[k] += t0.v[k];
#pragma unroll
                for (int k = 0; k < N; k++) acc[k] += t1.v[k];
            }
            if (r < r1) {
                Pack<S> t = pack_terms(r, c0);
#pragma unroll
                for (int k = 0; k < N; k++) acc[k] += t.v[k];
            }
        } else {
            int columns = min(N, width - c0);
            for (int r = r0 + rowLane; r < r1; r += COLUMN_SUM_LANES) {
#pragma unroll
                for (int k = 0; k < N; k++)
                    if (k < columns) acc[k] += term(r, c0 + k);
            }
        }
    }
#pragma unroll
    for (int k = 0; k < N; k++) laneSums[rowLane][k][lane] = acc[k];
    __syncthreads();
    if (rowLane == 0 && c0 < width) {
        float sum[N];
#pragma unroll
        for (int k = 0; k < N; k++) {
            sum[k] = laneSums[0][k][lane];
#pragma unroll
            for (int l = 1; l < COLUMN_SUM_LANES; l++) sum[k] += laneSums[l][k][lane];
        }
        store_floats(partials + static_cast<long long>(blockIdx.x) * stride + c0, sum);
    }
}

/// Whether every row of a [rows, width] matrix at p starts 16-byte aligned: the packed path of column_partials.
template <typename S>
static __device__ __forceinline__ bool rows_packable(const S* p, int width) {
    return width % Pack<S>::N == 0 && (reinterpret_cast<unsigned long long>(p) & 15u) == 0;
}
