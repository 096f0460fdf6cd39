// swiglu.cu — y = silu(g) * u = g * sigmoid(g) * u and its gradient, for float and bf16 storage:
// du = dy * g * s, dg = dy * u * s * (1 + g * (1 - s)), s = sigmoid(g). Reference: src/OR1.Native/Cpu/SwiGlu.cs.
// Memory-bound: 16-byte packs (vector_io.cuh), scalar ends for views at odd offsets.
#include "common.cuh"
#include "vector_io.cuh"

static __device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

static __device__ __forceinline__ float swiglu(float g, float u) { return g * sigmoid(g) * u; }

/// (dGate, dUp) of one element; the scalar and the pack paths share it, so both give the same bits.
static __device__ __forceinline__ void swiglu_grad(float d, float g, float u, float& dGate, float& dUp) {
    float s = sigmoid(g);
    float t = d * s;
    dUp = t * g;
    dGate = t * u * (1.0f + g * (1.0f - s));
}

/// Launch: 1-D grid-stride over the packs and scalar ends of n, blocks of up to 256 threads.
template <typename S>
static __device__ __forceinline__ void swiglu_forward(const S* __restrict__ gate, const S* __restrict__ up,
                                                      S* __restrict__ out, long long n) {
    constexpr int N = Pack<S>::N;
    PackRange r = pack_range<N>(n, out, gate, up);
    for_each_pack<N>(
        r, grid_worker(), grid_workers(),
        [&](long long i) {
            Pack<S> g = load_pack(gate + i), u = load_pack(up + i), y;
#pragma unroll
            for (int k = 0; k < N; k++) y.v[k] = swiglu(g.v[k], u.v[k]);
            store_pack(out + i, y);
        },
        [&](long long i) { out[i] = from_f32<S>(swiglu(to_f32(gate[i]), to_f32(up[i]))); });
}
OR1_BOUNDED_STORAGE_KERNELS(swiglu_forward, (256), (const S* __restrict__ gate, const S* __restrict__ up, S* __restrict__ out, long long n),
                            (gate, up, out, n))

/// Launch: as swiglu_forward.
template <typename S>
static __device__ __forceinline__ void swiglu_backward(const S* __restrict__ dy, const S* __restrict__ gate,
                                                       const S* __restrict__ up, S* __restrict__ dGate,
                                                       S* __restrict__ dUp, long long n) {
    constexpr int N = Pack<S>::N;
    PackRange r = pack_range<N>(n, dGate, dUp, dy, gate, up);
    for_each_pack<N>(
        r, grid_worker(), grid_workers(),
        [&](long long i) {
            Pack<S> d = load_pack(dy + i), g = load_pack(gate + i), u = load_pack(up + i), dg, du;
#pragma unroll
            for (int k = 0; k < N; k++) swiglu_grad(d.v[k], g.v[k], u.v[k], dg.v[k], du.v[k]);
            store_pack(dGate + i, dg);
            store_pack(dUp + i, du);
        },
        [&](long long i) {
            float dg, du;
            swiglu_grad(to_f32(dy[i]), to_f32(gate[i]), to_f32(up[i]), dg, du);
            dGate[i] = from_f32<S>(dg);
            dUp[i] = from_f32<S>(du);
        });
}
OR1_BOUNDED_STORAGE_KERNELS(swiglu_backward, (256),
                            (const S* __restrict__ dy, const S* __restrict__ gate, const S* __restrict__ up, S* __restrict__ dGate,
                             S* __restrict__ dUp, long long n),
                            (dy, gate, up, dGate, dUp, n))
