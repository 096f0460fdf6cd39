// rope.cu — rotary embedding, HF rotate_half convention (element i pairs with i + D/2), forward and
// inverse (the backward), for float and bf16 storage. Angles as HF Qwen2 computes them in fp32:
// inv_freq = 1 / theta^(2i/D), angle = (float)pos * inv_freq. Reference: src/OR1.Native/Cpu/Rope.cs.
// Memory-bound: a thread rotates a pack of N pairs (vector_io.cuh) with two 16-byte loads and two 16-byte stores,
// when D/2 is a multiple of N and both tensors are 16-byte aligned (every head dim the model uses); otherwise one
// pair per step, scalar.
#include "common.cuh"
#include "vector_io.cuh"

/// (x1, x2) rotated by the angle of pair i at `position`; the scalar and the pack paths share it (same bits).
static __device__ __forceinline__ void rope_rotate(float& x1, float& x2, int position, int i, int headDim, float theta, float sign) {
    float invFreq = 1.0f / powf(theta, static_cast<float>(2 * i) / static_cast<float>(headDim));
    float angle = static_cast<float>(position) * invFreq;
    float c = cosf(angle), s = sign * sinf(angle);
    float y1 = x1 * c - x2 * s;
    float y2 = x2 * c + x1 * s;
    x1 = y1;
    x2 = y2;
}

/// out may alias in: each thread reads its pairs before writing them. sign = +1 forward, -1 inverse.
/// A negative position is reported to the error record (common.cuh; it indexes no memory, so the row is still
/// rotated). Launch: 1-D grid-stride over rows*heads*D/2 pairs (in packs of N pairs when they fit), blocks of up to 256 threads.
template <typename S>
static __device__ __forceinline__ void rope_apply(const S* in, const int* __restrict__ positions, S* out, int rows,
                                                  int numHeads, int headDim, float theta, float sign,
                                                  unsigned long long* errors, unsigned check) {
    constexpr int N = Pack<S>::N;
    int half = headDim / 2;
    long long heads = static_cast<long long>(rows) * numHeads;
    // Head rows are headDim apart, so with half a multiple of N both halves of every head start on a pack boundary.
    bool packed = half % N == 0 && (reinterpret_cast<unsigned long long>(in) & 15u) == 0 &&
                  (reinterpret_cast<unsigned long long>(out) & 15u) == 0;
    int step = packed ? N : 1;
    int steps = half / step;
    long long total = heads * steps;
    OR1_GRID_STRIDE(idx, total) {
        int i = static_cast<int>(idx % steps) * step;
        long long rh = idx / steps; // row * numHeads + head
        int row = static_cast<int>(rh / numHeads);
        int position = positions[row];
        if (position < 0 && rh % numHeads == 0 && i == 0) report_bad_index(errors, check, row, position);
        long long base = rh * headDim;
        if (packed) {
            Pack<S> x1 = load_pack(in + base + i), x2 = load_pack(in + base + half + i);
#pragma unroll
            for (int k = 0; k < N; k++) rope_rotate(x1.v[k], x2.v[k], position, i + k, headDim, theta, sign);
            store_pack(out + base + i, x1);
            store_pack(out + base + half + i, x2);
        } else {
            float x1 = to_f32(in[base + i]), x2 = to_f32(in[base + half + i]);
            rope_rotate(x1, x2, position, i, headDim, theta, sign);
            out[base + i] = from_f32<S>(x1);
            out[base + half + i] = from_f32<S>(x2);
        }
    }
}
OR1_BOUNDED_STORAGE_KERNELS(rope_apply, (256),
                            (const S* in, const int* __restrict__ positions, S* out, int rows, int numHeads, int headDim, float theta,
                             float sign, unsigned long long* errors, unsigned check),
                            (in, positions, out, rows, numHeads, headDim, theta, sign, errors, check))
