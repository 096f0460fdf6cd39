// swiglu.cu — y = silu(g) * u = g * sigmoid(g) * u and its gradient:
// du = dy * g * s, dg = dy * u * s * (1 + g * (1 - s)), s = sigmoid(g). Reference: src/OR1.Native/Cpu/SwiGlu.cs.
#include "common.cuh"

static __device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

OR1_KERNEL void swiglu_forward(const storage_t* __restrict__ gate, const storage_t* __restrict__ up,
                               storage_t* __restrict__ out, long long n) {
    OR1_GRID_STRIDE(i, n) {
        float g = to_f32(gate[i]);
        out[i] = from_f32(g * sigmoid(g) * to_f32(up[i]));
    }
}
OR1_REGISTER(swiglu_forward)

OR1_KERNEL void swiglu_backward(const storage_t* __restrict__ dy, const storage_t* __restrict__ gate,
                                const storage_t* __restrict__ up, storage_t* __restrict__ dGate,
                                storage_t* __restrict__ dUp, long long n) {
    OR1_GRID_STRIDE(i, n) {
        float g = to_f32(gate[i]), u = to_f32(up[i]), d = to_f32(dy[i]);
        float s = sigmoid(g);
        float t = d * s;
        dUp[i] = from_f32(t * g);
        dGate[i] = from_f32(t * u * (1.0f + g * (1.0f - s)));
    }
}
OR1_REGISTER(swiglu_backward)
