// embedding.cu — token embedding lookup and its deterministic gradient, for float and bf16 storage (the
// gradient of the table is fp32, a parameter gradient). Reference: src/OR1.Native/Cpu/Embedding.cs.
// Memory-bound: rows move in 16-byte packs (vector_io.cuh), scalar where a view's alignment does not allow them.
#include "common.cuh"
#include "vector_io.cuh"

/// out[n, :] = table[ids[n], :]. An id outside [0, vocab) is reported to the error record (common.cuh) and
/// its row of out zeroed, never read from outside the table. Launch: grid over rows (grid-stride), blocks of up to 128 threads.
template <typename S>
static __device__ __forceinline__ void embedding_forward(const int* __restrict__ ids, const S* __restrict__ table,
                                                         S* __restrict__ out, int count, int width, int vocab,
                                                         unsigned long long* errors, unsigned check) {
    constexpr int N = Pack<S>::N;
    for (int n = blockIdx.x; n < count; n += gridDim.x) {
        int id = ids[n];
        S* to = out + static_cast<long long>(n) * width;
        if (id < 0 || id >= vocab) {
            if (threadIdx.x == 0) report_bad_index(errors, check, n, id);
            PackRange r = pack_range<N>(width, to);
            for_each_pack<N>(
                r, threadIdx.x, blockDim.x, [&](long long c) { store16(to + c, uint4{0u, 0u, 0u, 0u}); },
                [&](long long c) { to[c] = from_f32<S>(0.0f); });
            continue;
        }
        const S* from = table + static_cast<long long>(id) * width;
        // A copy: the 16 bytes move as they are, no conversion.
        PackRange r = pack_range<N>(width, to, from);
        for_each_pack<N>(
            r, threadIdx.x, blockDim.x, [&](long long c) { store16(to + c, load16(from + c)); }, [&](long long c) { to[c] = from[c]; });
    }
}
OR1_BOUNDED_STORAGE_KERNELS(embedding_forward, (128),
                            (const int* __restrict__ ids, const S* __restrict__ table, S* __restrict__ out, int count, int width, int vocab,
                             unsigned long long* errors, unsigned check),
                            (ids, table, out, count, width, vocab, errors, check))

/// dTable[ids[n], :] += dOut[n, :], deterministic without sorting or atomics: vocabulary rows are owned by buckets
/// (row id % buckets = blockIdx.x) and columns by threads: thread t of column block blockIdx.y owns the N columns
/// from (blockIdx.y * blockDim.x + t) * N, one pack (N = the storage's pack: 8 for bf16, 4 for fp32; the fp32
/// gradient side of a bf16 pack is two 16-byte accesses). Every block scans all tokens in order and adds those whose
/// id it owns, so each element of dTable has one writer that sums repeated ids in token order.
/// Ids outside [0, vocab) are skipped and reported (by one thread of the grid).
/// Launch: grid (buckets, ceil(width / (blockDim.x N))), blocks of up to 128 threads.
template <typename S>
static __device__ __forceinline__ void embedding_backward(const int* __restrict__ ids, const S* __restrict__ dOut,
                                                          float* __restrict__ dTable, int count, int width, int buckets, int vocab,
                                                          unsigned long long* errors, unsigned check) {
    constexpr int N = Pack<S>::N;
    int bucket = blockIdx.x;
    int c = (blockIdx.y * blockDim.x + threadIdx.x) * N;
    if (c >= width) return;
    bool reporter = bucket == 0 && c == 0;
    // Every row of both matrices starts 16-byte aligned: the owned columns move as one pack (in the same order).
    bool packed = width % N == 0 && (reinterpret_cast<unsigned long long>(dOut) & 15u) == 0 &&
                  (reinterpret_cast<unsigned long long>(dTable) & 15u) == 0;
    int columns = min(N, width - c);
    for (int n = 0; n < count; n++) {
        int id = ids[n];
        if (id < 0 || id >= vocab) {
            if (reporter) report_bad_index(errors, check, n, id);
            continue;
        }
        if (id % buckets != bucket) continue;
        const S* from = dOut + static_cast<long long>(n) * width + c;
        float* to = dTable + static_cast<long long>(id) * width + c;
        if (packed) {
            Pack<S> d = load_pack(from);
            float t[N];
            load_floats(to, t);
#pragma unroll
            for (int k = 0; k < N; k++) t[k] += d.v[k];
            store_floats(to, t);
        } else {
            for (int k = 0; k < columns; k++) to[k] += to_f32(from[k]);
        }
    }
}
OR1_BOUNDED_STORAGE_KERNELS(embedding_backward, (128),
                            (const int* __restrict__ ids, const S* __restrict__ dOut, float* __restrict__ dTable, int count, int width,
                             int buckets, int vocab, unsigned long long* errors, unsigned check),
                            (ids, dOut, dTable, count, width, buckets, vocab, errors, check))
