namespace OR1.Tests.Reference;

/// <summary>
/// GEMM in double: c = alpha * op(a) * op(b) + beta * c, op(x) = x or x^T, row-major.
/// a is [m, k] (or [k, m] when transposed), b is [k, n] (or [n, k]), c is [m, n].
/// </summary>
public static class MatMulReference
{
    /// <summary>Rank-2 forward, in place on <paramref name="c"/>. beta = 0 ignores c's old contents, NaN included.</summary>
    public static void Forward(double[] a, bool transposeA, double[] b, bool transposeB, double[] c,
        int m, int n, int k, double alpha = 1, double beta = 0)
        => ForwardBatched(a, transposeA, b, transposeB, c, 1, m, n, k, alpha, beta);

    /// <summary>Batched forward: the same on <paramref name="batch"/> contiguous (strided) matrices of a, b and c.</summary>
    public static void ForwardBatched(double[] a, bool transposeA, double[] b, bool transposeB, double[] c,
        int batch, int m, int n, int k, double alpha = 1, double beta = 0)
    {
        CheckSizes(a, b, c, batch, m, n, k);
        for (int t = 0; t < batch; t++)
        {
            int aBase = t * m * k, bBase = t * k * n, cBase = t * m * n;
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (int p = 0; p < k; p++)
                        sum += a[aBase + AIndex(i, p, m, k, transposeA)] * b[bBase + BIndex(p, j, n, k, transposeB)];
                    // beta == 0 must not read c: the contract says stale NaNs there are ignored.
                    double old = beta == 0 ? 0 : beta * c[cBase + i * n + j];
                    c[cBase + i * n + j] = alpha * sum + old;
                }
            }
        }
    }

    /// <summary>
    /// Rank-2 backward of c = alpha * op(a) * op(b) (+ beta * c_old, whose gradient is simply beta * dC):
    /// returns dA and dB laid out like a and b (overwritten, not accumulated).
    /// </summary>
    public static (double[] DA, double[] DB) Backward(double[] dC, double[] a, bool transposeA, double[] b, bool transposeB,
        int m, int n, int k, double alpha = 1)
        => BackwardBatched(dC, a, transposeA, b, transposeB, 1, m, n, k, alpha);

    /// <summary>Batched backward: per-batch dA and dB, laid out like a and b.</summary>
    public static (double[] DA, double[] DB) BackwardBatched(double[] dC, double[] a, bool transposeA, double[] b, bool transposeB,
        int batch, int m, int n, int k, double alpha = 1)
    {
        CheckSizes(a, b, dC, batch, m, n, k);
        var dA = new double[a.Length];
        var dB = new double[b.Length];
        for (int t = 0; t < batch; t++)
        {
            int aBase = t * m * k, bBase = t * k * n, cBase = t * m * n;
            // d op(a)[i, p] = alpha * sum_j dC[i, j] op(b)[p, j], written back through the same index map as the forward.
            for (int i = 0; i < m; i++)
            {
                for (int p = 0; p < k; p++)
                {
                    double sum = 0;
                    for (int j = 0; j < n; j++) sum += dC[cBase + i * n + j] * b[bBase + BIndex(p, j, n, k, transposeB)];
                    dA[aBase + AIndex(i, p, m, k, transposeA)] = alpha * sum;
                }
            }
            // d op(b)[p, j] = alpha * sum_i op(a)[i, p] dC[i, j].
            for (int p = 0; p < k; p++)
            {
                for (int j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (int i = 0; i < m; i++) sum += a[aBase + AIndex(i, p, m, k, transposeA)] * dC[cBase + i * n + j];
                    dB[bBase + BIndex(p, j, n, k, transposeB)] = alpha * sum;
                }
            }
        }
        return (dA, dB);
    }

    /// <summary>Storage index of op(a)[i, p].</summary>
    private static int AIndex(int i, int p, int m, int k, bool transposed) => transposed ? p * m + i : i * k + p;

    /// <summary>Storage index of op(b)[p, j].</summary>
    private static int BIndex(int p, int j, int n, int k, bool transposed) => transposed ? j * k + p : p * n + j;

    private static void CheckSizes(double[] a, double[] b, double[] c, int batch, int m, int n, int k)
    {
        if (a.Length != batch * m * k) throw new ArgumentException($"a has {a.Length} elements, expected {batch}x{m}x{k}", nameof(a));
        if (b.Length != batch * k * n) throw new ArgumentException($"b has {b.Length} elements, expected {batch}x{k}x{n}", nameof(b));
        if (c.Length != batch * m * n) throw new ArgumentException($"c has {c.Length} elements, expected {batch}x{m}x{n}", nameof(c));
    }
}
