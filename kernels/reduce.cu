// reduce.cu — the deterministic reductions across blocks:
//  - sum of squares for the global gradient norm over every gradient tensor in two launches (apex's
//    multi_tensor_apply: one launch over a device table of tensors, so the launch count does not grow with the
//    model's tensor count): per-block partials in double over a fixed chunk partition, then one block adds the
//    partials in order. Deterministic for a fixed launch shape. Reference: src/OR1.Native/Cpu/Reduce.cs.
//  - the second stage of the column sums (column_sums.cuh): the per-row-block partial column sums of the bias and
//    RMSNorm weight gradients added in row-block order.
#include "common.cuh"
#include "vector_io.cuh"

/// One tensor of a global norm: 3 fields of 8 bytes, written by the launcher into a device table. Tensors with no
/// elements are left out of the table, so every entry owns at least one chunk.
struct SumsqTensor {
    const float* x;       // fp32: parameter gradients are fp32 masters in every precision
    long long count;
    long long firstChunk; // index of this tensor's first chunk among all chunks of the launch
};

#define SUMSQ_CHUNK 16384 // elements: a multiple of 4, so every chunk of a tensor has the tensor's 16-byte alignment
#define SUMSQ_THREADS 256

/// x^2 in double: a float's square is exact there, so only the additions round.
static __device__ __forceinline__ double sumsq_square(float v) {
    double d = v;
    return d * d;
}

static __device__ __forceinline__ double sumsq_square4(float4 q) {
    return (sumsq_square(q.x) + sumsq_square(q.y)) + (sumsq_square(q.z) + sumsq_square(q.w));
}

/// This thread's share of the sum of squares of p[0 .. n), n <= SUMSQ_CHUNK, in a fixed order. Slices may start on any
/// float, so the elements before the first 16-byte boundary are read one by one, then float4s, then the remainder.
/// __ldg: the pointers come from the table, so without it the loads would be generic rather than global.
static __device__ __forceinline__ double sumsq_chunk(const float* __restrict__ p, int n) {
    int tid = threadIdx.x, threads = blockDim.x;
    unsigned misaligned = static_cast<unsigned>(reinterpret_cast<unsigned long long>(p)) & 15u;
    int head = min(n, static_cast<int>(((16u - misaligned) & 15u) >> 2));
    int vectors = (n - head) >> 2;
    int tail = head + vectors * 4;
    const float4* v = reinterpret_cast<const float4*>(p + head);
    double sum = 0.0;
    if (tid < head) sum += sumsq_square(__ldg(p + tid));
    // Four loads in flight before the first use (the compiler does not hoist __ldg across the adds); the sum
    // order is that of the plain loop either way.
    int i = tid;
    for (; i + 3 * threads < vectors; i += 4 * threads) {
        float4 q0 = __ldg(v + i), q1 = __ldg(v + i + threads), q2 = __ldg(v + i + 2 * threads), q3 = __ldg(v + i + 3 * threads);
        sum += sumsq_square4(q0);
        sum += sumsq_square4(q1);
        sum += sumsq_square4(q2);
        sum += sumsq_square4(q3);
    }
    for (; i < vectors; i += threads) sum += sumsq_square4(__ldg(v + i));
    if (tail + tid < n) sum += sumsq_square(__ldg(p + tail + tid));
    return sum;
}

/// partials[blockIdx.x] = sum of x^2 over chunks blockIdx.x, blockIdx.x + gridDim.x, ... of the flattened tensor list
/// (chunks of SUMSQ_CHUNK elements, per tensor, in table order). Deterministic: the chunk -> block assignment depends
/// only on the grid, each thread adds its elements in a fixed order and block_sum_d's order is fixed, so the same
/// tensors and grid give bit-identical partials on every run.
/// Launch: grid = min(total chunks, any cap) blocks (at least one), block = SUMSQ_THREADS (a multiple of 32 up to it).
OR1_BOUNDED_KERNEL(sumsq_multi, (SUMSQ_THREADS),
                   (const SumsqTensor* __restrict__ tensors, int tensorCount, long long chunks, double* __restrict__ partials)) {
    __shared__ double scratch[32];
    double sum = 0.0;
    int owner = 0;
    for (long long chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
        // Binary search for the tensor owning this chunk (tensors are in chunk order); a block's chunks only grow,
        // so the search starts at the previous owner.
        int hi = tensorCount - 1;
        while (owner < hi) {
            int mid = (owner + hi + 1) / 2;
            if (tensors[mid].firstChunk <= chunk) owner = mid; else hi = mid - 1;
        }
        const SumsqTensor t = tensors[owner];
        long long start = (chunk - t.firstChunk) * SUMSQ_CHUNK;
        sum += sumsq_chunk(t.x + start, static_cast<int>(min(static_cast<long long>(SUMSQ_CHUNK), t.count - start)));
    }
    sum = block_sum_d(sum, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

/// result[0] = sum of partials[0 .. count). Launch: exactly one block, of up to 256 threads.
OR1_BOUNDED_KERNEL(sumsq_final, (256), (const double* __restrict__ partials, int count, double* __restrict__ result)) {
    __shared__ double scratch[32];
    double sum = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
    sum = block_sum_d(sum, scratch);
    if (threadIdx.x == 0) result[0] = sum;
}

#define COLUMN_REDUCE_LANES 32 // row lanes of a column_partials_reduce block; its 256 threads are 8 packs of 4 columns x 32 lanes

/// out[c] += sum over b < blocks of partials[b * stride + c], for c < width: stage 2 of column_sums.cuh. Row lane l of a
/// block adds the partial rows l, l + 32, ... in order, then the lanes' sums are added in lane order, so the result
/// depends on the shape only. partials is 16-byte aligned and stride a multiple of 8 (rows of whole packs); out is any
/// fp32 view (scalar read-modify-write, one writer per element).
/// Launch: grid ceil(width / 32), blocks of 256 threads.
OR1_BOUNDED_KERNEL(column_partials_reduce, (256),
                   (const float* __restrict__ partials, int blocks, int stride, int width, float* __restrict__ out)) {
    // Padded rows: lanes of a warp write 4 rows x 8 packs, all in different banks.
    __shared__ float laneSums[COLUMN_REDUCE_LANES][33];
    int pack = threadIdx.x & 7, rowLane = threadIdx.x >> 3;
    int c = blockIdx.x * 32 + pack * 4;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    if (c < width) {
        // Unrolled so that several partial rows are in flight before the first add needs one.
#pragma unroll 4
        for (int b = rowLane; b < blocks; b += COLUMN_REDUCE_LANES) {
            Pack<float> p = load_pack(partials + static_cast<long long>(b) * stride + c);
#pragma unroll
            for (int k = 0; k < 4; k++) acc[k] += p.v[k];
        }
    }
#pragma unroll
    for (int k = 0; k < 4; k++) laneSums[rowLane][pack * 4 + k] = acc[k];
    __syncthreads();
    int column = blockIdx.x * 32 + static_cast<int>(threadIdx.x);
    if (threadIdx.x < 32 && column < width) {
        float sum = laneSums[0][threadIdx.x];
#pragma unroll
        for (int l = 1; l < COLUMN_REDUCE_LANES; l++) sum += laneSums[l][threadIdx.x];
        out[column] += sum;
    }
}
