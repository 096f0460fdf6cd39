namespace OR1.Tests.Reference;

/// <summary>
/// Causal grouped-query attention over packed sequences. Sequence s covers rows [offsets[s], offsets[s + 1]);
/// a row attends to the rows of its own sequence at or before it. q, output [N, Hq * D]; k, v [N, Hkv * D];
/// query head h reads kv head h / (Hq / Hkv).
/// </summary>
public static class AttentionReference
{
    /// <summary>Returns the output [N, Hq * D] and the log-sum-exp of the scaled scores [N, Hq].</summary>
    public static (double[] Output, double[] LogSumExp) Forward(double[] q, double[] k, double[] v, int[] offsets,
        int numHeads, int numKvHeads, int headDim, double scale)
    {
        int n = CheckShapes(q, k, v, offsets, numHeads, numKvHeads, headDim);
        int qWidth = numHeads * headDim, kvWidth = numKvHeads * headDim, group = numHeads / numKvHeads;
        var output = new double[n * qWidth];
        var logSumExp = new double[n * numHeads];
        for (int s = 0; s + 1 < offsets.Length; s++)
        {
            int start = offsets[s];
            for (int i = start; i < offsets[s + 1]; i++)
            {
                for (int h = 0; h < numHeads; h++)
                {
                    int kvh = h / group;
                    double[] p = Probabilities(q, k, i, h, kvh, start, qWidth, kvWidth, headDim, scale, out double lse);
                    logSumExp[i * numHeads + h] = lse;
                    for (int j = start; j <= i; j++)
                    {
                        for (int d = 0; d < headDim; d++)
                            output[i * qWidth + h * headDim + d] += p[j - start] * v[j * kvWidth + kvh * headDim + d];
                    }
                }
            }
        }
        return (output, logSumExp);
    }

    /// <summary>
    /// Gradients with respect to q, k and v (fresh arrays; the op overwrites). Recomputes the softmax and
    /// back-propagates through its full Jacobian, dS_j = sum_l dP_l P_l (delta_lj - P_j), rather than the
    /// FlashAttention shortcut D_i = dO_i . O_i, so that it is an independent derivation for the kernels to be checked against.
    /// </summary>
    public static (double[] Dq, double[] Dk, double[] Dv) Backward(double[] dOutput, double[] q, double[] k, double[] v,
        int[] offsets, int numHeads, int numKvHeads, int headDim, double scale)
    {
        CheckShapes(q, k, v, offsets, numHeads, numKvHeads, headDim);
        int qWidth = numHeads * headDim, kvWidth = numKvHeads * headDim, group = numHeads / numKvHeads;
        if (dOutput.Length != q.Length) throw new ArgumentException($"dOutput has {dOutput.Length} elements, q has {q.Length}", nameof(dOutput));
        var dq = new double[q.Length];
        var dk = new double[k.Length];
        var dv = new double[v.Length];
        for (int s = 0; s + 1 < offsets.Length; s++)
        {
            int start = offsets[s];
            for (int i = start; i < offsets[s + 1]; i++)
            {
                for (int h = 0; h < numHeads; h++)
                {
                    int kvh = h / group;
                    int len = i - start + 1;
                    double[] p = Probabilities(q, k, i, h, kvh, start, qWidth, kvWidth, headDim, scale, out _);
                    var dP = new double[len];
                    for (int j = 0; j < len; j++)
                    {
                        int row = start + j;
                        for (int d = 0; d < headDim; d++)
                        {
                            double g = dOutput[i * qWidth + h * headDim + d];
                            dP[j] += g * v[row * kvWidth + kvh * headDim + d];
                            dv[row * kvWidth + kvh * headDim + d] += p[j] * g;
                        }
                    }
                    for (int j = 0; j < len; j++)
                    {
                        double dS = 0;
                        for (int l = 0; l < len; l++) dS += dP[l] * p[l] * ((l == j ? 1.0 : 0.0) - p[j]);
                        int row = start + j;
                        for (int d = 0; d < headDim; d++)
                        {
                            dq[i * qWidth + h * headDim + d] += scale * dS * k[row * kvWidth + kvh * headDim + d];
                            dk[row * kvWidth + kvh * headDim + d] += scale * dS * q[i * qWidth + h * headDim + d];
                        }
                    }
                }
            }
        }
        return (dq, dk, dv);
    }

    /// <summary>
    /// Single-row decode: row b of q [B, Hq * D] attends to positions [0, lengths[b]) of cache slot cacheSlots[b];
    /// keyCache and valueCache are [slots, maxLength, Hkv * D]. Returns output [B, Hq * D].
    /// </summary>
    public static double[] Decode(double[] q, double[] keyCache, double[] valueCache, int[] cacheSlots, int[] lengths,
        int maxLength, int numHeads, int numKvHeads, int headDim, double scale)
    {
        int batch = cacheSlots.Length;
        int qWidth = numHeads * headDim, kvWidth = numKvHeads * headDim, group = CheckHeads(numHeads, numKvHeads);
        if (q.Length != batch * qWidth) throw new ArgumentException($"q has {q.Length} elements, expected {batch}x{qWidth}", nameof(q));
        if (lengths.Length != batch) throw new ArgumentException($"lengths has {lengths.Length} entries, cacheSlots {batch}", nameof(lengths));
        if (keyCache.Length != valueCache.Length || keyCache.Length % (maxLength * kvWidth) != 0)
            throw new ArgumentException($"caches of {keyCache.Length} and {valueCache.Length} elements are not [slots, {maxLength}, {kvWidth}]", nameof(keyCache));
        int slots = keyCache.Length / (maxLength * kvWidth);
        var output = new double[batch * qWidth];
        for (int b = 0; b < batch; b++)
        {
            int slot = cacheSlots[b], len = lengths[b];
            if ((uint)slot >= (uint)slots) throw new ArgumentOutOfRangeException(nameof(cacheSlots), $"row {b} reads slot {slot} of {slots}");
            if (len < 1 || len > maxLength) throw new ArgumentOutOfRangeException(nameof(lengths), $"row {b} has length {len}, outside [1, {maxLength}]");
            for (int h = 0; h < numHeads; h++)
            {
                int kvh = h / group;
                var scores = new double[len];
                for (int t = 0; t < len; t++)
                {
                    double dot = 0;
                    for (int d = 0; d < headDim; d++)
                        dot += q[b * qWidth + h * headDim + d] * keyCache[((long)slot * maxLength + t) * kvWidth + kvh * headDim + d];
                    scores[t] = scale * dot;
                }
                double[] p = Softmax(scores, out _);
                for (int t = 0; t < len; t++)
                {
                    for (int d = 0; d < headDim; d++)
                        output[b * qWidth + h * headDim + d] += p[t] * valueCache[((long)slot * maxLength + t) * kvWidth + kvh * headDim + d];
                }
            }
        }
        return output;
    }

    /// <summary>Softmax over rows [start, i] of the scaled scores of query row i, head h.</summary>
    private static double[] Probabilities(double[] q, double[] k, int i, int h, int kvh, int start,
        int qWidth, int kvWidth, int headDim, double scale, out double logSumExp)
    {
        var scores = new double[i - start + 1];
        for (int j = start; j <= i; j++)
        {
            double dot = 0;
            for (int d = 0; d < headDim; d++) dot += q[i * qWidth + h * headDim + d] * k[j * kvWidth + kvh * headDim + d];
            scores[j - start] = scale * dot;
        }
        return Softmax(scores, out logSumExp);
    }

    private static double[] Softmax(double[] scores, out double logSumExp)
    {
        double max = double.NegativeInfinity;
        foreach (double s in scores) max = Math.Max(max, s);
        double sum = 0;
        foreach (double s in scores) sum += Math.Exp(s - max);
        logSumExp = max + Math.Log(sum);
        var p = new double[scores.Length];
        for (int j = 0; j < scores.Length; j++) p[j] = Math.Exp(scores[j] - logSumExp);
        return p;
    }

    private static int CheckHeads(int numHeads, int numKvHeads)
    {
        if (numKvHeads <= 0 || numHeads % numKvHeads != 0)
            throw new ArgumentException($"{numKvHeads} kv heads do not divide {numHeads} query heads", nameof(numKvHeads));
        return numHeads / numKvHeads;
    }

    private static int CheckShapes(double[] q, double[] k, double[] v, int[] offsets, int numHeads, int numKvHeads, int headDim)
    {
        CheckHeads(numHeads, numKvHeads);
        if (offsets.Length < 1 || offsets[0] != 0) throw new ArgumentException("offsets must start with 0", nameof(offsets));
        for (int s = 1; s < offsets.Length; s++)
        {
            if (offsets[s] < offsets[s - 1]) throw new ArgumentException($"offsets decrease at {s}", nameof(offsets));
        }
        int n = offsets[^1];
        if (q.Length != n * numHeads * headDim) throw new ArgumentException($"q has {q.Length} elements, expected {n}x{numHeads}x{headDim}", nameof(q));
        if (k.Length != n * numKvHeads * headDim) throw new ArgumentException($"k has {k.Length} elements, expected {n}x{numKvHeads}x{headDim}", nameof(k));
        if (v.Length != k.Length) throw new ArgumentException($"v has {v.Length} elements, k has {k.Length}", nameof(v));
        return n;
    }
}
