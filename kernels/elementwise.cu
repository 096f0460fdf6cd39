// elementwise.cu — fill, add, scale, bias forward/backward (float and bf16 storage), dtype conversion, row
// gather/scatter and index checks. Memory-bound one-pass kernels: 16-byte packs (vector_io.cuh) with scalar ends for
// views at odd offsets, in grid-stride loops so any grid size covers any length.
// Reference: src/OR1.Native/Cpu/Elementwise.cs.
#include "common.cuh"
#include "vector_io.cuh"
#include "column_sums.cuh"

/// x[i] = value. Launch: any 1-D grid of 1-D blocks of up to 256 threads (the launchers' grid-stride block).
template <typename S>
static __device__ __forceinline__ void fill(S* __restrict__ x, long long n, float value) {
    constexpr int N = Pack<S>::N;
    S v = from_f32<S>(value);
    Pack<S> packed;
#pragma unroll
    for (int k = 0; k < N; k++) packed.v[k] = value;
    uint4 bits = repack(packed);
    PackRange r = pack_range<N>(n, x);
    for_each_pack<N>(r, grid_worker(), grid_workers(), [&](long long i) { store16(x + i, bits); }, [&](long long i) { x[i] = v; });
}
OR1_BOUNDED_STORAGE_KERNELS(fill, (256), (S* __restrict__ x, long long n, float value), (x, n, value))

/// out = a + b, rounded once to S (out may alias a or b: each element is read before it is written by the same thread).
template <typename S>
static __device__ __forceinline__ void add(const S* a, const S* b, S* out, long long n) {
    constexpr int N = Pack<S>::N;
    PackRange r = pack_range<N>(n, out, a, b);
    for_each_pack<N>(
        r, grid_worker(), grid_workers(),
        [&](long long i) {
            Pack<S> x = load_pack(a + i), y = load_pack(b + i);
#pragma unroll
            for (int k = 0; k < N; k++) x.v[k] += y.v[k];
            store_pack(out + i, x);
        },
        [&](long long i) { out[i] = from_f32<S>(to_f32(a[i]) + to_f32(b[i])); });
}
OR1_BOUNDED_STORAGE_KERNELS(add, (256), (const S* a, const S* b, S* out, long long n), (a, b, out, n))

/// x *= factor.
template <typename S>
static __device__ __forceinline__ void scale(S* __restrict__ x, long long n, float factor) {
    constexpr int N = Pack<S>::N;
    PackRange r = pack_range<N>(n, x);
    for_each_pack<N>(
        r, grid_worker(), grid_workers(),
        [&](long long i) {
            Pack<S> v = load_pack(x + i);
#pragma unroll
            for (int k = 0; k < N; k++) v.v[k] *= factor;
            store_pack(x + i, v);
        },
        [&](long long i) { x[i] = from_f32<S>(to_f32(x[i]) * factor); });
}
OR1_BOUNDED_STORAGE_KERNELS(scale, (256), (S* __restrict__ x, long long n, float factor), (x, n, factor))

/// x[r, c] += bias[c]. In packs when every row of x and the bias start 16-byte aligned (a pack then never crosses a
/// row), one element at a time otherwise. Launch: 1-D grid-stride, blocks of up to 256 threads.
template <typename S>
static __device__ __forceinline__ void add_bias(S* __restrict__ x, const S* __restrict__ bias, int rows, int width) {
    constexpr int N = Pack<S>::N;
    long long n = static_cast<long long>(rows) * width;
    if (rows_packable(x, width) && (reinterpret_cast<unsigned long long>(bias) & 15u) == 0) {
        for (long long p = grid_worker(); p < n / N; p += grid_workers()) {
            long long i = p * N;
            Pack<S> v = load_pack(x + i), b = load_pack(bias + i % width);
#pragma unroll
            for (int k = 0; k < N; k++) v.v[k] += b.v[k];
            store_pack(x + i, v);
        }
    } else {
        OR1_GRID_STRIDE(i, n) x[i] = from_f32<S>(to_f32(x[i]) + to_f32(bias[i % width]));
    }
}
OR1_BOUNDED_STORAGE_KERNELS(add_bias, (256), (S* __restrict__ x, const S* __restrict__ bias, int rows, int width), (x, bias, rows, width))

/// Stage 1 of dBias[c] += sum_r dOut[r, c] (fp32, a parameter gradient; column_sums.cuh): this block's rows into
/// partials[blockIdx.x, :]; column_partials_reduce (reduce.cu) adds them into dBias. Deterministic, no atomics.
/// Launch: grid (ceil(rows / rowsPerBlock), ceil(width / (32 N))), COLUMN_SUM_THREADS threads per block.
template <typename S>
static __device__ __forceinline__ void bias_backward(const S* __restrict__ dOut, int rows, int width, int rowsPerBlock,
                                                     float* __restrict__ partials, int stride) {
    column_partials<S>(
        rows, width, rowsPerBlock, rows_packable(dOut, width), partials, stride,
        [&](int r, int c) { return load_pack(dOut + static_cast<long long>(r) * width + c); },
        [&](int r, int c) { return to_f32(dOut[static_cast<long long>(r) * width + c]); });
}
OR1_BOUNDED_STORAGE_KERNELS(bias_backward, (COLUMN_SUM_THREADS),
                            (const S* __restrict__ dOut, int rows, int width, int rowsPerBlock, float* __restrict__ partials, int stride),
                            (dOut, rows, width, rowsPerBlock, partials, stride))

/// dst = src in another storage type (float -> bf16 rounds to nearest even; bf16 -> float is exact), in packs of 8
/// elements (16 bytes of bf16, two 16-byte accesses of float). Launch: 1-D grid-stride, blocks of up to 256 threads.
OR1_BOUNDED_KERNEL(convert_f32_bf16, (256), (const float* __restrict__ src, bf16* __restrict__ dst, long long n)) {
    PackRange r = pack_range<8>(n, dst, src);
    for_each_pack<8>(
        r, grid_worker(), grid_workers(),
        [&](long long i) {
            Pack<bf16> out;
            load_floats(src + i, out.v);
            store_pack(dst + i, out);
        },
        [&](long long i) { dst[i] = from_f32<bf16>(src[i]); });
}

OR1_BOUNDED_KERNEL(convert_bf16_f32, (256), (const bf16* __restrict__ src, float* __restrict__ dst, long long n)) {
    PackRange r = pack_range<8>(n, src, dst);
    for_each_pack<8>(
        r, grid_worker(), grid_workers(), [&](long long i) { store_floats(dst + i, load_pack(src + i).v); },
        [&](long long i) { dst[i] = to_f32(src[i]); });
}

/// Copies one row of rowBytes bytes (any dtype, views at any offset): 16-byte pieces between the first and the last
/// 16-byte boundary where source and destination share their offset from one; otherwise (rows off the 16-byte grid by
/// different amounts: fp32 rows of an odd width, say) 4-byte words where they share a 4-byte offset; single bytes at
/// the ends and where neither fits.
static __device__ __forceinline__ void copy_row(const unsigned char* __restrict__ from, unsigned char* __restrict__ to, long long rowBytes) {
    PackRange wide = pack_range<16>(rowBytes, to, from);
    if (wide.packs > 0) {
        for_each_pack<16>(
            wide, threadIdx.x, blockDim.x, [&](long long b) { store16(to + b, load16(from + b)); }, [&](long long b) { to[b] = from[b]; });
        return;
    }
    PackRange words = pack_range<4>(rowBytes, to, from);
    for_each_pack<4>(
        words, threadIdx.x, blockDim.x,
        [&](long long b) { *reinterpret_cast<unsigned int*>(to + b) = *reinterpret_cast<const unsigned int*>(from + b); },
        [&](long long b) { to[b] = from[b]; });
}

/// Moves the rows that idx names: gather (dst[i] = src[idx[i]]) or scatter (dst[idx[i]] = src[i]), rows of rowBytes
/// bytes (any dtype), idx[i] in [0, rows). An index outside is reported to the error record (check id `check`, see
/// common.cuh) and its row skipped. Launch: grid over count (grid-stride), one block of up to 128 threads per row.
template <bool kGather>
static __device__ __forceinline__ void move_rows(const unsigned char* __restrict__ src, const int* __restrict__ idx,
                                                 unsigned char* __restrict__ dst, int count, long long rowBytes, int rows,
                                                 unsigned long long* errors, unsigned check) {
    for (int i = blockIdx.x; i < count; i += gridDim.x) {
        int r = idx[i];
        if (r < 0 || r >= rows) {
            if (threadIdx.x == 0) report_bad_index(errors, check, i, r);
            continue;
        }
        long long from = kGather ? r : i, to = kGather ? i : r;
        copy_row(src + from * rowBytes, dst + to * rowBytes, rowBytes);
    }
}

/// dst[i, :] = src[idx[i], :]. Launch: see move_rows.
OR1_BOUNDED_KERNEL(gather_rows, (128), (const unsigned char* __restrict__ src, const int* __restrict__ idx,
                                        unsigned char* __restrict__ dst, int count, long long rowBytes, int rows,
                                        unsigned long long* errors, unsigned check)) {
    move_rows<true>(src, idx, dst, count, rowBytes, rows, errors, check);
}

/// dst[idx[i], :] = src[i, :]; indices are distinct (contract), so rows never collide. Launch: see move_rows.
OR1_BOUNDED_KERNEL(scatter_rows, (128), (const unsigned char* __restrict__ src, const int* __restrict__ idx,
                                         unsigned char* __restrict__ dst, int count, long long rowBytes, int rows,
                                         unsigned long long* errors, unsigned check)) {
    move_rows<false>(src, idx, dst, count, rowBytes, rows, errors, check);
}
