// gemm.cu — C = alpha op(A) op(B) + beta C, row-major, strided batches. The Cuda backend sends GEMMs to
// cuBLAS (cublasGemmEx); this tiled kernel is what the Emu backend runs (and the Cuda backend only behind an
// explicit `gemm: builtin`), so the launch path and the row-major conventions are exercised in CI.
// beta = 0 ignores C's old contents.
#include "common.cuh"

#define GEMM_TILE 16

/// Launch: block (16, 16), grid (ceil(n / 16), ceil(m / 16), batch).
/// op(A) is [m, k]: A[i, p] at A[i * lda + p], or A[p * lda + i] when transA. Likewise B ([k, n]).
/// A and B in the input type T, C in the output type U (bf16 inputs may accumulate into an fp32 C, as
/// parameter gradients do); products summed in fp32, the result rounded once to U.
template <typename T, typename U>
static __device__ __forceinline__ void gemm(int transA, int transB, int m, int n, int k, float alpha,
                                            const T* __restrict__ A, int lda, long long strideA,
                                            const T* __restrict__ B, int ldb, long long strideB, float beta,
                                            U* __restrict__ C, int ldc, long long strideC) {
    __shared__ float As[GEMM_TILE][GEMM_TILE + 1];
    __shared__ float Bs[GEMM_TILE][GEMM_TILE + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * GEMM_TILE + ty, col = blockIdx.x * GEMM_TILE + tx;
    A += blockIdx.z * strideA;
    B += blockIdx.z * strideB;
    C += blockIdx.z * strideC;
    float acc = 0.f;
    for (int p0 = 0; p0 < k; p0 += GEMM_TILE) {
        // As[ty][tx] = op(A)[blockRow + ty, p0 + tx]; Bs[ty][tx] = op(B)[p0 + ty, blockCol + tx]
        int ai = blockIdx.y * GEMM_TILE + ty, ap = p0 + tx;
        As[ty][tx] = (ai < m && ap < k) ? to_f32(transA ? A[static_cast<long long>(ap) * lda + ai] : A[static_cast<long long>(ai) * lda + ap]) : 0.f;
        int bp = p0 + ty, bj = blockIdx.x * GEMM_TILE + tx;
        Bs[ty][tx] = (bp < k && bj < n) ? to_f32(transB ? B[static_cast<long long>(bj) * ldb + bp] : B[static_cast<long long>(bp) * ldb + bj]) : 0.f;
        __syncthreads();
#pragma unroll
        for (int p = 0; p < GEMM_TILE; p++) acc += As[ty][p] * Bs[p][tx];
        __syncthreads();
    }
    if (row < m && col < n) {
        U* c = C + static_cast<long long>(row) * ldc + col;
        *c = from_f32<U>(beta == 0.f ? alpha * acc : alpha * acc + beta * to_f32(*c));
    }
}

#define OR1_GEMM_KERNEL(name, T, U)                                                                 \
    OR1_BOUNDED_KERNEL(name, (GEMM_TILE * GEMM_TILE),                                               \
                       (int transA, int transB, int m, int n, int k, float alpha, const T* __restrict__ A, int lda, \
                        long long strideA, const T* __restrict__ B, int ldb, long long strideB, float beta,       \
                        U* __restrict__ C, int ldc, long long strideC)) {                           \
        gemm<T, U>(transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC); \
    }

// The three combinations the model uses: fp32 throughout; bf16 throughout; bf16 inputs into an fp32 C.
OR1_GEMM_KERNEL(gemm_f32, float, float)
OR1_GEMM_KERNEL(gemm_bf16, bf16, bf16)
OR1_GEMM_KERNEL(gemm_bf16_f32, bf16, float)
