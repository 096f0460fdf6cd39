// embedding.cu — token embedding lookup and its deterministic gradient, for float and bf16 storage (the
// gradient of the table is fp32, a parameter gradient). Reference: src/OR1.Native/Cpu/Embedding.cs.
#include "common.cuh"

/// out[n, :] = table[ids[n], :]. An id outside [0, vocab) is reported to the error record (common.cuh) and
/// its row of out zeroed, never read from outside the table. Launch: grid over rows (grid-stride), blocks of up to 128 threads.
template <typename S>
static __device__ __forceinline__ void embedding_forward(const int* __restrict__ ids, const S* __restrict__ table,
                                                         S* __restrict__ out, int count, int width, int vocab,
                                                         unsigned long long* errors, unsigned check) {
    for (int n = blockIdx.x; n < count; n += gridDim.x) {
        int id = ids[n];
        S* to = out + static_cast<long long>(n) * width;
        if (id < 0 || id >= vocab) {
            if (threadIdx.x == 0) report_bad_index(errors, check, n, id);
            for (int c = threadIdx.x; c < width; c += blockDim.x) to[c] = from_f32<S>(0.0f);
            continue;
        }
        const S* from = table + static_cast<long long>(id) * width;
        for (int c = threadIdx.x; c < width; c += blockDim.x) to[c] = from[c];
    }
}
OR1_BOUNDED_STORAGE_KERNELS(embedding_forward, (128),
                            (const int* __restrict__ ids, const S* __restrict__ table, S* __restrict__ out, int count, int width, int vocab,
                             unsigned long long* errors, unsigned check),
                            (ids, table, out, count, width, vocab, errors, check))

/// dTable[ids[n], :] += dOut[n, :], deterministic without sorting or atomics: vocabulary rows are
/// owned by buckets (row id % buckets = blockIdx.x) and columns by threads (blockIdx.y * blockDim.x +
/// threadIdx.x). Every block scans all tokens in order and adds those whose id it owns, so each element
/// of dTable has one writer that sums repeated ids in token order.
/// Ids outside [0, vocab) are skipped and reported (by one thread of the grid).
/// Launch: grid (buckets, ceil(width / blockDim.x)), blocks of up to 128 threads.
template <typename S>
static __device__ __forceinline__ void embedding_backward(const int* __restrict__ ids, const S* __restrict__ dOut,
                                                          float* __restrict__ dTable, int count, int width, int buckets, int vocab,
                                                          unsigned long long* errors, unsigned check) {
    int bucket = blockIdx.x;
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= width) return;
    bool reporter = bucket == 0 && c == 0;
    for (int n = 0; n < count; n++) {
        int id = ids[n];
        if (id < 0 || id >= vocab) {
            if (reporter) report_bad_index(errors, check, n, id);
            continue;
        }
        if (id % buckets != bucket) continue;
        dTable[static_cast<long long>(id) * width + c] += to_f32(dOut[static_cast<long long>(n) * width + c]);
    }
}
OR1_BOUNDED_STORAGE_KERNELS(embedding_backward, (128),
                            (const int* __restrict__ ids, const S* __restrict__ dOut, float* __restrict__ dTable, int count, int width,
                             int buckets, int vocab, unsigned long long* errors, unsigned check),
                            (ids, dOut, dTable, count, width, buckets, vocab, errors, check))
