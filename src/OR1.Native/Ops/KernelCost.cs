namespace OR1.Native;

/// <summary>
/// The arithmetic an op does, counted the way the field reports it, so that benchmarks on every backend
/// (and anyone profiling the package) turn a time into GFLOP/s and a fraction of a stated peak the same way.
/// Counts are of useful work: a kernel that recomputes more (or skips masked tiles) does not change them.
/// </summary>
public static class KernelCost
{
    /// <summary>C[m, n] = A[m, k] B[k, n]: one multiply and one add per multiply-accumulate, 2 m n k.</summary>
    public static double MatMulFlops(int m, int n, int k) => 2.0 * m * n * k;

    /// <summary>
    /// FlashAttention's count for the forward of one batch of packed sequences: 4 S² H D per sequence of
    /// length S (the two GEMMs Q Kᵀ and P V, 2 flops per multiply-accumulate, H query heads of width D),
    /// halved when causal. Softmax's exponentials are not counted.
    /// </summary>
    public static double AttentionForwardFlops(ReadOnlySpan<int> sequenceLengths, AttentionHeads heads, bool causal = true)
    {
        double total = 0;
        foreach (int s in sequenceLengths)
        {
            if (s < 0) throw new ArgumentOutOfRangeException(nameof(sequenceLengths), s, "sequence lengths must be non-negative");
            total += 4.0 * s * (double)s * heads.NumHeads * heads.HeadDim;
        }
        return causal ? total / 2 : total;
    }

    /// <summary>FlashAttention's count for the backward: 2.5 times the forward (five GEMMs against two).</summary>
    public static double AttentionBackwardFlops(ReadOnlySpan<int> sequenceLengths, AttentionHeads heads, bool causal = true) =>
        2.5 * AttentionForwardFlops(sequenceLengths, heads, causal);

    /// <summary>
    /// Single-token decode against KV caches of the given lengths: 4 L H D per row (q·K and p·V). This op
    /// is bound by reading the caches; the count is for reference, bytes are what matter.
    /// </summary>
    public static double AttentionDecodeFlops(ReadOnlySpan<int> cacheLengths, AttentionHeads heads)
    {
        double total = 0;
        foreach (int l in cacheLengths) total += 4.0 * l * heads.NumHeads * heads.HeadDim;
        return total;
    }

    /// <summary>The fused LM-head log-prob forward: the logits GEMM, 2 rows hidden vocab (the softmax statistics are not counted).</summary>
    public static double LogProbForwardFlops(int rows, int hidden, int vocab) => MatMulFlops(rows, vocab, hidden);

    /// <summary>
    /// The log-prob backward: the logits are recomputed (never stored) and two GEMMs give dHidden and
    /// dWeight, 3 times the forward.
    /// </summary>
    public static double LogProbBackwardFlops(int rows, int hidden, int vocab) => 3 * LogProbForwardFlops(rows, hidden, vocab);
}
