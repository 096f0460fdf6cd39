// reduce.cu — sum of squares for the global gradient norm: per-block partials in double over a fixed
// partition, then one block adds the partials in order. Deterministic for a fixed launch shape.
// Reference: src/OR1.Native/Cpu/Reduce.cs.
#include "common.cuh"

/// partials[blockIdx.x] = sum over the block's grid-stride share of x^2. Launch: any grid, block multiple of 32.
OR1_KERNEL void sumsq_partial(const float* __restrict__ x, long long n, double* __restrict__ partials) {
    __shared__ double scratch[32];
    double sum = 0.0;
    OR1_GRID_STRIDE(i, n) {
        float v = x[i];
        sum += static_cast<double>(v * v);
    }
    sum = block_sum_d(sum, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}
OR1_REGISTER(sumsq_partial)

/// result[0] = sum of partials[0 .. count). Launch: exactly one block.
OR1_KERNEL void sumsq_final(const double* __restrict__ partials, int count, double* __restrict__ result) {
    __shared__ double scratch[32];
    double sum = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
    sum = block_sum_d(sum, scratch);
    if (threadIdx.x == 0) result[0] = sum;
}
OR1_REGISTER(sumsq_final)
