// embedding.cu — token embedding lookup and its deterministic gradient, for float and bf16 storage (the
// gradient of the table is fp32, a parameter gradient). Reference: src/OR1.Native/Cpu/Embedding.cs.
#include "common.cuh"

/// out[n, :] = table[ids[n], :]. Ids were checked by the launcher. Launch: grid over rows (grid-stride).
template <typename S>
static __device__ __forceinline__ void embedding_forward(const int* __restrict__ ids, const S* __restrict__ table,
                                                         S* __restrict__ out, int count, int width) {
    for (int n = blockIdx.x; n < count; n += gridDim.x) {
        const S* from = table + static_cast<long long>(ids[n]) * width;
        S* to = out + static_cast<long long>(n) * width;
        for (int c = threadIdx.x; c < width; c += blockDim.x) to[c] = from[c];
    }
}
OR1_STORAGE_KERNELS(embedding_forward,
                    (const int* __restrict__ ids, const S* __restrict__ table, S* __restrict__ out, int count, int width),
                    (ids, table, out, count, width))

/// dTable[ids[n], :] += dOut[n, :], deterministic without sorting or atomics: vocabulary rows are
/// owned by buckets (row id % buckets = blockIdx.x) and columns by threads (blockIdx.y * blockDim.x +
/// threadIdx.x). Every block scans all tokens in order and adds those whose id it owns, so each element
/// of dTable has one writer that sums repeated ids in token order.
/// Launch: grid (buckets, ceil(width / blockDim.x)).
template <typename S>
static __device__ __forceinline__ void embedding_backward(const int* __restrict__ ids, const S* __restrict__ dOut,
                                                          float* __restrict__ dTable, int count, int width, int buckets) {
    int bucket = blockIdx.x;
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= width) return;
    for (int n = 0; n < count; n++) {
        int id = ids[n];
        if (id % buckets != bucket) continue;
        dTable[static_cast<long long>(id) * width + c] += to_f32(dOut[static_cast<long long>(n) * width + c]);
    }
}
OR1_STORAGE_KERNELS(embedding_backward,
                    (const int* __restrict__ ids, const S* __restrict__ dOut, float* __restrict__ dTable, int count, int width,
                     int buckets),
                    (ids, dOut, dTable, count, width, buckets))
