// swiglu.cu — y = silu(g) * u = g * sigmoid(g) * u and its gradient, for float and bf16 storage:
// du = dy * g * s, dg = dy * u * s * (1 + g * (1 - s)), s = sigmoid(g). Reference: src/OR1.Native/Cpu/SwiGlu.cs.
#include "common.cuh"

static __device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

/// Launch: 1-D grid-stride over n, blocks of up to 256 threads.
template <typename S>
static __device__ __forceinline__ void swiglu_forward(const S* __restrict__ gate, const S* __restrict__ up,
                                                      S* __restrict__ out, long long n) {
    OR1_GRID_STRIDE(i, n) {
        float g = to_f32(gate[i]);
        out[i] = from_f32<S>(g * sigmoid(g) * to_f32(up[i]));
    }
}
OR1_BOUNDED_STORAGE_KERNELS(swiglu_forward, (256), (const S* __restrict__ gate, const S* __restrict__ up, S* __restrict__ out, long long n),
                            (gate, up, out, n))

template <typename S>
static __device__ __forceinline__ void swiglu_backward(const S* __restrict__ dy, const S* __restrict__ gate,
                                                       const S* __restrict__ up, S* __restrict__ dGate,
                                                       S* __restrict__ dUp, long long n) {
    OR1_GRID_STRIDE(i, n) {
        float g = to_f32(gate[i]), u = to_f32(up[i]), d = to_f32(dy[i]);
        float s = sigmoid(g);
        float t = d * s;
        dUp[i] = from_f32<S>(t * g);
        dGate[i] = from_f32<S>(t * u * (1.0f + g * (1.0f - s)));
    }
}
OR1_BOUNDED_STORAGE_KERNELS(swiglu_backward, (256),
                            (const S* __restrict__ dy, const S* __restrict__ gate, const S* __restrict__ up, S* __restrict__ dGate,
                             S* __restrict__ dUp, long long n),
                            (dy, gate, up, dGate, dUp, n))
