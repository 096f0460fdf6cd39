// rope.cu — rotary embedding, HF rotate_half convention (element i pairs with i + D/2), forward and
// inverse (the backward), for float and bf16 storage. Angles as HF Qwen2 computes them in fp32:
// inv_freq = 1 / theta^(2i/D), angle = (float)pos * inv_freq. Reference: src/OR1.Native/Cpu/Rope.cs.
#include "common.cuh"

/// out may alias in: each thread reads its pair before writing it. sign = +1 forward, -1 inverse.
/// A negative position is reported to the error record (common.cuh; it indexes no memory, so the row is still
/// rotated). Launch: 1-D grid-stride over rows*heads*D/2, blocks of up to 256 threads.
template <typename S>
static __device__ __forceinline__ void rope_apply(const S* in, const int* __restrict__ positions, S* out, int rows,
                                                  int numHeads, int headDim, float theta, float sign,
                                                  unsigned long long* errors, unsigned check) {
    int half = headDim / 2;
    long long total = static_cast<long long>(rows) * numHeads * half;
    OR1_GRID_STRIDE(idx, total) {
        int i = static_cast<int>(idx % half);
        long long rh = idx / half; // row * numHeads + head
        int row = static_cast<int>(rh / numHeads);
        float invFreq = 1.0f / powf(theta, static_cast<float>(2 * i) / static_cast<float>(headDim));
        int position = positions[row];
        if (position < 0 && rh % numHeads == 0 && i == 0) report_bad_index(errors, check, row, position);
        float angle = static_cast<float>(position) * invFreq;
        float c = cosf(angle), s = sign * sinf(angle);
        long long base = rh * headDim;
        float x1 = to_f32(in[base + i]), x2 = to_f32(in[base + half + i]);
        out[base + i] = from_f32<S>(x1 * c - x2 * s);
        out[base + half + i] = from_f32<S>(x2 * c + x1 * s);
    }
}
OR1_BOUNDED_STORAGE_KERNELS(rope_apply, (256),
                            (const S* in, const int* __restrict__ positions, S* out, int rows, int numHeads, int headDim, float theta,
                             float sign, unsigned long long* errors, unsigned check),
                            (in, positions, out, rows, numHeads, headDim, theta, sign, errors, check))
