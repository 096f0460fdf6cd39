// attention_decode.cu — decode attention: one new query row per batch entry against its KV cache, as flash-decoding.
//
// A decode step reads every cached key and value once and does about G multiply-adds per element it reads (G = query
// heads per kv head), so it is bound by memory bandwidth, and the kernel is laid out for that:
//
//  - Split over the sequence. A block takes a contiguous range of `chunk` cache positions of one (batch row, kv head):
//    grid (batch, kv heads x head chunks, splits). The batch is on x because y and z stop at 65,535 on a GPU and a
//    step's rows include a chunked prefill's positions (MaxBatch + the prefill budget); the splits, never more than the
//    device's block count, fit z. The launcher picks the chunk from the batch, the kv heads, the cache length and the
//    device's size (src/OR1.Native/Kernels/DecodeKernels.cs), so one row with a 32K cache fills the GPU as
//    64 rows with 4K do. Each block leaves the partial softmax of its range: per query head the running max m, the sum
//    l and the unnormalised output, fp32, exponents in base 2. attention_decode_combine merges a row's partials by their
//    log-sum-exp in split order: no atomics, the same bits every run. A launch with one split writes the output itself.
//
//  - Grouped-query heads together. The G query heads that share a kv head (up to HB = 8 per block: Qwen2's groups are
//    5 to 8) are all in the block, so each K and V byte is read once per step. Above 8 the heads are split into head
//    chunks of 8, and each chunk reads the kv head again.
//
//  - Coalesced 16-byte loads. A group of T lanes (a power of two, 8 T >= D) holds one cache row: lane t owns head-dim
//    columns [8t, 8t + 8) and reads them with one 16-byte load of bf16 (two of fp32), so a warp reads 32 / T whole rows,
//    each a contiguous run of D elements, in full 32-byte sectors (LDG.E.128 in the SASS). The next row's K and V are
//    loaded before the current row is used, so two rows per lane are in flight. Head dims that are not a multiple of 8,
//    or caches not 16-byte aligned, take the scalar path: lane t owns columns t, t + T, ..., t + 7T, still coalesced,
//    2 or 4 bytes a load.
//
//  - Per row: each lane dots its columns with each head's query (held in registers, pre-scaled by scale * log2 e), the
//    group sums over its T lanes with xor shuffles (every lane of the group ends with the same bits), and each group
//    keeps its own (m, l, acc) per head: one exp2 per row and head, and the rescale only when the max grows (otherwise
//    its factor is exp2(0) = 1 exactly, so skipping it changes no bit). The block then merges its groups through shared
//    memory in group order.
//
// The same template serves float and bf16 storage with the same lane mapping and the same order of operations, so the
// bf16 kernel's output is the fp32 kernel's on the same values, rounded once (AttentionBf16Tests holds it to that).
//
// Cache rows. The cache is paged, as vLLM's: [pages, pageSize, kvHeads * D], and batch entry b has a table of
// pagesPerRow pages, pageTable[b, i] the physical page of its positions [i pageSize, (i + 1) pageSize). The only code that
// knows this is decode_cache_row: row = table[position / pageSize] * pageSize + position % pageSize. A contiguous cache
// is the case pagesPerRow = 1, pageSize = its capacity (the table is then one slot per row).
//
// Device-side checks: a length outside [1, pagesPerRow * pageSize] (id check + 1) is reported to the error record
// (common.cuh) by one block of the row, and the row's output is zero (written by the split kernel with one split, by the
// combine otherwise); the cache is never read for that row. A table entry outside [0, pages) that the row reads (id
// `check`, its flat index b * pagesPerRow + i) is reported by the lanes that meet it, which read nothing for it; the
// row's output is then not meaningful, and the op fails at the next synchronisation.
// Reference: src/OR1.Native/Cpu/AttentionDecode.cs.
#include "common.cuh"
#include "vector_io.cuh"

#define DEC_WARPS 4
#define DEC_THREADS (DEC_WARPS * 32)
#define DEC_COLS 8                 // head-dim columns per lane: 16 bytes of bf16
#define DEC_COMBINE_THREADS 128
#define DEC_COMBINE_COLS 8         // head-dim columns per lane in the combine: D <= 256
#define DEC_LOG2E 1.4426950408889634f

/// The page table of one batch row, and what a lookup needs to report a bad entry.
struct DecodePages {
    const int* table; // pagesPerRow entries
    int pageSize, pages, firstEntry;
    unsigned long long* errors;
    unsigned check;
};

/// The cache row that holds `position` (of a row whose length exceeds it: `valid`); 0 for an invalid position or a bad
/// page, which is reported. The one place that knows the cache layout (see the file comment).
static __device__ __forceinline__ long long decode_cache_row(const DecodePages& p, int position, bool valid) {
    if (!valid) return 0;
    const int index = position / p.pageSize, page = p.table[index];
    if (page < 0 || page >= p.pages) {
        report_bad_index(p.errors, p.check, p.firstEntry + index, page);
        return 0;
    }
    return static_cast<long long>(page) * p.pageSize + (position - index * p.pageSize);
}

/// Head-dim column of element j of lane t in a group of T lanes: 8 contiguous columns on the vector path, a stride of T
/// on the scalar path (consecutive lanes on consecutive elements either way).
template <bool VEC>
static __device__ __forceinline__ int decode_column(int t, int j, int T) {
    return VEC ? t * DEC_COLS + j : t + j * T;
}

/// One lane's 8 columns of one cache row, as loaded (unpacked to fp32 only where they are used, so the load of the next
/// row is not waited for early).
template <typename S, bool VEC>
struct DecodeChunk {
    float x[DEC_COLS]; // the scalar path converts at the load: 8 registers either way
};
template <>
struct DecodeChunk<float, true> {
    uint4 a, b;
};
template <>
struct DecodeChunk<bf16, true> {
    uint4 a;
};

static __device__ __forceinline__ void decode_load(DecodeChunk<float, true>& c, const float* row, int t, int T, int D, bool valid) {
    if (valid && t * DEC_COLS < D) {
        c.a = load16(row + t * DEC_COLS);
        c.b = load16(row + t * DEC_COLS + 4);
    } else {
        c.a = c.b = uint4{0u, 0u, 0u, 0u};
    }
}

static __device__ __forceinline__ void decode_load(DecodeChunk<bf16, true>& c, const bf16* row, int t, int T, int D, bool valid) {
    c.a = valid && t * DEC_COLS < D ? load16(row + t * DEC_COLS) : uint4{0u, 0u, 0u, 0u};
}

template <typename S>
static __device__ __forceinline__ void decode_load(DecodeChunk<S, false>& c, const S* row, int t, int T, int D, bool valid) {
    const int columns = valid && t < D ? (D - t + T - 1) / T : 0; // this lane's columns t, t + T, ... below D
    const S* p = row + t;
#pragma unroll
    for (int j = 0; j < DEC_COLS; j++) c.x[j] = j < columns ? to_f32(p[j * T]) : 0.f;
}

static __device__ __forceinline__ void decode_unpack(const DecodeChunk<float, true>& c, float (&x)[DEC_COLS]) {
    x[0] = __uint_as_float(c.a.x); x[1] = __uint_as_float(c.a.y); x[2] = __uint_as_float(c.a.z); x[3] = __uint_as_float(c.a.w);
    x[4] = __uint_as_float(c.b.x); x[5] = __uint_as_float(c.b.y); x[6] = __uint_as_float(c.b.z); x[7] = __uint_as_float(c.b.w);
}

/// Two bf16 per word, the lower column in the low half: a bf16 is the upper half of its fp32.
static __device__ __forceinline__ void decode_unpack(const DecodeChunk<bf16, true>& c, float (&x)[DEC_COLS]) {
    const unsigned w[4] = {c.a.x, c.a.y, c.a.z, c.a.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        x[2 * i] = __uint_as_float(w[i] << 16);
        x[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

template <typename S>
static __device__ __forceinline__ void decode_unpack(const DecodeChunk<S, false>& c, float (&x)[DEC_COLS]) {
#pragma unroll
    for (int j = 0; j < DEC_COLS; j++) x[j] = c.x[j];
}

/// Lanes per cache row: the smallest power of two with 8 T >= D (D <= 256, so T <= 32).
static __device__ __forceinline__ int decode_group_lanes(int D) {
    int T = 1;
    while (T * DEC_COLS < D) T <<= 1;
    return T;
}

/// Partial softmax of one chunk of cache positions for up to HB query heads of one kv head.
/// Launch: grid (batch, numKvHeads * ceil(G / HB), splits), block DEC_THREADS (128), dynamic shared
/// (groups * HB * (D + 2) + 2 * HB) floats with groups = 4 * 32 / T (at most 32 KB + 1 KB for HB = 8).
/// partials (splits > 1): [batch, numHeads, splits, D] unnormalised outputs, then [batch, numHeads, splits, 2] (m, l).
template <typename S, int HB, bool VEC>
static __device__ __forceinline__ void attention_decode_split(
    const S* __restrict__ q, const S* __restrict__ keyCache, const S* __restrict__ valueCache, const int* __restrict__ pageTable,
    const int* __restrict__ lengths, S* __restrict__ out, float* __restrict__ partials, int batch, int pagesPerRow, int pageSize,
    int numHeads, int numKvHeads, int headDim, float scale, int chunk, int pages, unsigned long long* errors, unsigned check) {
    const int b = blockIdx.x, split = blockIdx.z, splits = gridDim.z;
    const int G = numHeads / numKvHeads, headChunks = (G + HB - 1) / HB;
    const int hk = blockIdx.y / headChunks, firstHead = (blockIdx.y % headChunks) * HB;
    const int h0 = hk * G + firstHead, heads = min(HB, G - firstHead);
    const int D = headDim;
    const long long qStride = static_cast<long long>(numHeads) * D, kvStride = static_cast<long long>(numKvHeads) * D;
    const int length = lengths[b];
    const DecodePages rowPages{pageTable + static_cast<long long>(b) * pagesPerRow, pageSize, pages, b * pagesPerRow, errors, check};
    if (!(length >= 1 && length <= static_cast<long long>(pagesPerRow) * pageSize)) {
        // Uniform over the block, so returning leaves no thread behind a barrier. One block of the row reports.
        if (split == 0 && blockIdx.y == 0 && threadIdx.x == 0) report_bad_index(errors, check + 1, b, length);
        if (splits == 1)
            for (int e = threadIdx.x; e < heads * D; e += blockDim.x) out[b * qStride + static_cast<long long>(h0) * D + e] = from_f32<S>(0.f);
        return;
    }
    const int rowBegin = split * chunk;
    if (rowBegin >= length) return; // past this row's cache: the combine reads only the splits that hold rows
    const int rowEnd = min(length, rowBegin + chunk);

    const int T = decode_group_lanes(D);
    const int lane = threadIdx.x & 31, t = lane & (T - 1);
    const int groupsPerWarp = 32 / T, groups = DEC_WARPS * groupsPerWarp;
    const int group = (threadIdx.x >> 5) * groupsPerWarp + lane / T;

    const float qScale = scale * DEC_LOG2E;
    float qr[HB][DEC_COLS];
#pragma unroll
    for (int g = 0; g < HB; g++) {
        const S* qh = q + b * qStride + static_cast<long long>(h0 + g) * D;
#pragma unroll
        for (int j = 0; j < DEC_COLS; j++) {
            int col = decode_column<VEC>(t, j, T);
            qr[g][j] = g < heads && col < D ? to_f32(qh[col]) * qScale : 0.f;
        }
    }

    float m[HB], l[HB], acc[HB][DEC_COLS];
#pragma unroll
    for (int g = 0; g < HB; g++) {
        m[g] = OR1_NEG_INF;
        l[g] = 0.f;
#pragma unroll
        for (int j = 0; j < DEC_COLS; j++) acc[g][j] = 0.f;
    }

    const S* kHead = keyCache + static_cast<long long>(hk) * D;
    const S* vHead = valueCache + static_cast<long long>(hk) * D;
    // Every warp runs the same number of steps (the shuffles need all 32 lanes); a group past the range loads nothing.
    const int steps = (rowEnd - rowBegin + groups - 1) / groups;
    int position = rowBegin + group;
    DecodeChunk<S, VEC> kNext, vNext;
    {
        const long long row = decode_cache_row(rowPages, position, position < rowEnd) * kvStride;
        decode_load(kNext, kHead + row, t, T, D, position < rowEnd);
        decode_load(vNext, vHead + row, t, T, D, position < rowEnd);
    }
    for (int i = 0; i < steps; i++) {
        const DecodeChunk<S, VEC> kc = kNext, vc = vNext;
        const bool valid = position < rowEnd;
        const int next = position + groups;
        if (i + 1 < steps) {
            const long long row = decode_cache_row(rowPages, next, next < rowEnd) * kvStride;
            decode_load(kNext, kHead + row, t, T, D, next < rowEnd);
            decode_load(vNext, vHead + row, t, T, D, next < rowEnd);
        }
        float k[DEC_COLS];
        decode_unpack(kc, k);
        float s[HB];
#pragma unroll
        for (int g = 0; g < HB; g++) {
            float dot = 0.f;
            if (g < heads) { // uniform over the block
#pragma unroll
                for (int j = 0; j < DEC_COLS; j++) dot = fmaf(qr[g][j], k[j], dot);
#pragma unroll
                for (int o = 16; o >= 1; o >>= 1)
                    if (o < T) dot += __shfl_xor_sync(OR1_FULL_MASK, dot, o);
            }
            s[g] = dot;
        }
        if (valid) {
            float v[DEC_COLS];
            decode_unpack(vc, v);
#pragma unroll
            for (int g = 0; g < HB; g++) {
                if (g < heads) {
                    if (s[g] > m[g]) {
                        const float alpha = exp2f(m[g] - s[g]);
                        l[g] *= alpha;
#pragma unroll
                        for (int j = 0; j < DEC_COLS; j++) acc[g][j] *= alpha;
                        m[g] = s[g];
                    }
                    const float p = exp2f(s[g] - m[g]);
                    l[g] += p;
#pragma unroll
                    for (int j = 0; j < DEC_COLS; j++) acc[g][j] = fmaf(p, v[j], acc[g][j]);
                }
            }
        }
        position = next;
    }

    // Merge the groups in group order: weights exp2(m_group - M), M the block's max per head.
    OR1_DYNAMIC_SHARED(float, smem);
    float* sAcc = smem;                     // [groups][HB][D]
    float* sM = sAcc + groups * HB * D;     // [groups][HB]: each group's max, then its weight
    float* sL = sM + groups * HB;           // [groups][HB]
    float* sTotal = sL + groups * HB;       // [HB][2]: the block's max and sum
#pragma unroll
    for (int g = 0; g < HB; g++) {
        if (g < heads) {
#pragma unroll
            for (int j = 0; j < DEC_COLS; j++) {
                int col = decode_column<VEC>(t, j, T);
                if (col < D) sAcc[(group * HB + g) * D + col] = acc[g][j];
            }
            if (t == 0) {
                sM[group * HB + g] = m[g];
                sL[group * HB + g] = l[g];
            }
        }
    }
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < heads) {
        const int g = threadIdx.x;
        float M = OR1_NEG_INF;
        for (int r = 0; r < groups; r++) M = fmaxf(M, sM[r * HB + g]); // finite: group 0 holds position rowBegin
        float L = 0.f;
        for (int r = 0; r < groups; r++) {
            const float w = exp2f(sM[r * HB + g] - M); // 0 for a group that held no row (m = -inf)
            sM[r * HB + g] = w;
            L += sL[r * HB + g] * w;
        }
        sTotal[2 * g] = M;
        sTotal[2 * g + 1] = L;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < heads * D; e += blockDim.x) {
        const int g = e / D, col = e - g * D;
        float o = 0.f;
        for (int r = 0; r < groups; r++) o += sAcc[(r * HB + g) * D + col] * sM[r * HB + g];
        if (splits == 1) {
            out[b * qStride + static_cast<long long>(h0 + g) * D + col] = from_f32<S>(o / sTotal[2 * g + 1]);
        } else {
            const long long at = (static_cast<long long>(b) * numHeads + h0 + g) * splits + split;
            partials[at * D + col] = o;
            if (col == 0) {
                float* ml = partials + static_cast<long long>(batch) * numHeads * splits * D;
                ml[2 * at] = sTotal[2 * g];
                ml[2 * at + 1] = sTotal[2 * g + 1];
            }
        }
    }
}

#define DEC_SPLIT_PARAMS                                                                                               \
    (const S* __restrict__ q, const S* __restrict__ keyCache, const S* __restrict__ valueCache,                         \
     const int* __restrict__ pageTable, const int* __restrict__ lengths, S* __restrict__ out, float* __restrict__ partials, \
     int batch, int pagesPerRow, int pageSize, int numHeads, int numKvHeads, int headDim, float scale, int chunk,      \
     int pages, unsigned long long* errors, unsigned check)
#define DEC_SPLIT_ARGS                                                                                                 \
    (q, keyCache, valueCache, pageTable, lengths, out, partials, batch, pagesPerRow, pageSize, numHeads, numKvHeads,     \
     headDim, scale, chunk, pages, errors, check)

/// The split kernels for HB heads per block, both paths, both storages: attention_decode_split_g<HB>_{f32,bf16} (16-byte
/// loads) and attention_decode_split_scalar_g<HB>_{f32,bf16}. Bounds (128, 1): with the thread count alone ptxas capped the
/// scalar kernels near 72-96 registers to fit more blocks and spilled; one block per SM lets it keep everything in registers
/// (HB = 8 needs about 210: the queries and accumulators of 8 heads, 64 + 64, and two rows of K and V in flight).
#define OR1_DECODE_SPLIT_KERNELS(HB)                                                                                   \
    namespace or1_storage_f32 {                                                                                        \
    OR1_BOUNDED_KERNEL(attention_decode_split_g##HB##_f32, (DEC_THREADS, 1), DEC_SPLIT_PARAMS) {                          \
        attention_decode_split<S, HB, true> DEC_SPLIT_ARGS;                                                            \
    }                                                                                                                  \
    OR1_BOUNDED_KERNEL(attention_decode_split_scalar_g##HB##_f32, (DEC_THREADS, 1), DEC_SPLIT_PARAMS) {                   \
        attention_decode_split<S, HB, false> DEC_SPLIT_ARGS;                                                           \
    }                                                                                                                  \
    }                                                                                                                  \
    namespace or1_storage_bf16 {                                                                                       \
    OR1_BOUNDED_KERNEL(attention_decode_split_g##HB##_bf16, (DEC_THREADS, 1), DEC_SPLIT_PARAMS) {                         \
        attention_decode_split<S, HB, true> DEC_SPLIT_ARGS;                                                            \
    }                                                                                                                  \
    OR1_BOUNDED_KERNEL(attention_decode_split_scalar_g##HB##_bf16, (DEC_THREADS, 1), DEC_SPLIT_PARAMS) {                  \
        attention_decode_split<S, HB, false> DEC_SPLIT_ARGS;                                                           \
    }                                                                                                                  \
    }

OR1_DECODE_SPLIT_KERNELS(1)
OR1_DECODE_SPLIT_KERNELS(2)
OR1_DECODE_SPLIT_KERNELS(4)
OR1_DECODE_SPLIT_KERNELS(8)

/// Merges the partials of each (batch row, query head) over the splits that hold rows (ceil(length / chunk)), in split
/// order: M = max m_s, L = sum l_s 2^(m_s - M), out = sum acc_s 2^(m_s - M) / L. A row whose length is out of range
/// (above `capacity`, its table's pages times the page size) gets zeros (the split kernel reported it).
/// Launch: grid (ceil(batch * numHeads / 4)), block DEC_COMBINE_THREADS (128): one warp per (batch row, query head),
/// lane d owns columns d, d + 32, ... (coalesced).
template <typename S>
static __device__ __forceinline__ void attention_decode_combine(const float* __restrict__ partials, const int* __restrict__ lengths,
                                                                S* __restrict__ out, int batch, int capacity, int numHeads,
                                                                int headDim, int splits, int chunk) {
    const long long w = static_cast<long long>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (w >= static_cast<long long>(batch) * numHeads) return; // warp-uniform
    const int lane = threadIdx.x & 31, D = headDim;
    const int b = static_cast<int>(w / numHeads);
    const int length = lengths[b];
    S* o = out + w * D; // out is [batch, numHeads * D]: (b, h) starts at (b * numHeads + h) * D
    if (length < 1 || length > capacity) {
        for (int d = lane; d < D; d += 32) o[d] = from_f32<S>(0.f);
        return;
    }
    const int used = (length + chunk - 1) / chunk;
    const float* acc = partials + w * splits * D;
    const float* ml = partials + static_cast<long long>(batch) * numHeads * splits * D + w * splits * 2;
    float M = OR1_NEG_INF;
    for (int s = 0; s < used; s++) M = fmaxf(M, ml[2 * s]);
    float L = 0.f, r[DEC_COMBINE_COLS];
#pragma unroll
    for (int i = 0; i < DEC_COMBINE_COLS; i++) r[i] = 0.f;
    for (int s = 0; s < used; s++) {
        const float weight = exp2f(ml[2 * s] - M);
        L += ml[2 * s + 1] * weight;
#pragma unroll
        for (int i = 0; i < DEC_COMBINE_COLS; i++) {
            const int d = lane + 32 * i;
            if (d < D) r[i] += acc[static_cast<long long>(s) * D + d] * weight;
        }
    }
#pragma unroll
    for (int i = 0; i < DEC_COMBINE_COLS; i++) {
        const int d = lane + 32 * i;
        if (d < D) o[d] = from_f32<S>(r[i] / L);
    }
}
OR1_BOUNDED_STORAGE_KERNELS(attention_decode_combine, (DEC_COMBINE_THREADS),
                            (const float* __restrict__ partials, const int* __restrict__ lengths, S* __restrict__ out, int batch, int capacity, int numHeads, int headDim, int splits, int chunk),
                            (partials, lengths, out, batch, capacity, numHeads, headDim, splits, chunk))
