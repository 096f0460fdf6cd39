namespace OR1.Native.Cuda;

/// <summary>
/// The row-major to column-major mapping of a GEMM. A row-major [r, c] matrix with leading dimension ld
/// is, read column-major, its transpose [c, r] with the same ld. So C = op(A) op(B) (row-major, [m, n])
/// is C^T = op(B)^T op(A)^T in column-major: call cuBLAS with the operands swapped, (m, n) swapped, and
/// each operand's own transpose flag kept: gemm(opB, opA, n, m, k, alpha, B, ldb, A, lda, beta, C, ldc).
/// </summary>
internal readonly record struct CublasGemm(int TransFirst, int TransSecond, int M, int N, int K,
    bool FirstIsB, int LdFirst, int LdSecond, int Ldc)
{
    /// <summary>The cuBLAS call for the row-major C[m, n] = alpha op(A) op(B) + beta C.</summary>
    public static CublasGemm FromRowMajor(bool transA, bool transB, int m, int n, int k, int lda, int ldb, int ldc) =>
        new(transB ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N, transA ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N,
            n, m, k, FirstIsB: true, LdFirst: ldb, LdSecond: lda, Ldc: ldc);
}
