namespace OR1.Tests.Reference;

/// <summary>
/// Log-probability of target tokens and full-vocabulary entropy under logits z = hidden · weight^T / temperature,
/// with the whole [N, V] logits matrix materialised (the kernels chunk the vocabulary; this must not).
/// hidden [N, D], weight [V, D], targets [N].
/// </summary>
public static class LogProbReference
{
    /// <summary>The logits z[n, v] = sum_d hidden[n, d] weight[v, d] / temperature, [N, V].</summary>
    public static double[] Logits(double[] hidden, double[] weight, int rows, int dim, int vocab, double temperature)
    {
        if (hidden.Length != rows * dim) throw new ArgumentException($"hidden has {hidden.Length} elements, expected {rows}x{dim}", nameof(hidden));
        if (weight.Length != vocab * dim) throw new ArgumentException($"weight has {weight.Length} elements, expected {vocab}x{dim}", nameof(weight));
        var z = new double[rows * vocab];
        for (int n = 0; n < rows; n++)
        {
            for (int v = 0; v < vocab; v++)
            {
                double dot = 0;
                for (int d = 0; d < dim; d++) dot += hidden[n * dim + d] * weight[v * dim + d];
                z[n * vocab + v] = dot / temperature;
            }
        }
        return z;
    }

    /// <summary>Returns logProbs[n] = z[n, targets[n]] - lse, entropy[n] = -sum_v p log p, and lse[n], each [N].</summary>
    public static (double[] LogProbs, double[] Entropy, double[] LogSumExp) Forward(double[] hidden, double[] weight, int[] targets,
        int dim, int vocab, double temperature)
    {
        int rows = targets.Length;
        double[] z = Logits(hidden, weight, rows, dim, vocab, temperature);
        var logProbs = new double[rows];
        var entropy = new double[rows];
        var lse = new double[rows];
        for (int n = 0; n < rows; n++)
        {
            CheckTarget(targets[n], vocab, n);
            lse[n] = LogSumExp(z, n * vocab, vocab);
            logProbs[n] = z[n * vocab + targets[n]] - lse[n];
            double h = 0;
            for (int v = 0; v < vocab; v++)
            {
                double logP = z[n * vocab + v] - lse[n];
                h -= Math.Exp(logP) * logP;
            }
            entropy[n] = h;
        }
        return (logProbs, entropy, lse);
    }

    /// <summary>
    /// Returns dHidden (fresh: the op overwrites it) and adds into dWeight. With g_v = dL/dz_v:
    /// d logp_t / dz_v = delta_vt - p_v and dH/dz_v = -p_v (log p_v + H), then dz/dhidden = weight / T and
    /// dz/dweight = hidden / T. dEntropy null means no entropy gradient.
    /// </summary>
    public static double[] Backward(double[] dLogProbs, double[]? dEntropy, double[] hidden, double[] weight, int[] targets,
        int dim, int vocab, double temperature, double[] dWeight)
    {
        int rows = targets.Length;
        if (dLogProbs.Length != rows) throw new ArgumentException($"dLogProbs has {dLogProbs.Length} elements, expected {rows}", nameof(dLogProbs));
        if (dEntropy != null && dEntropy.Length != rows) throw new ArgumentException($"dEntropy has {dEntropy.Length} elements, expected {rows}", nameof(dEntropy));
        if (dWeight.Length != vocab * dim) throw new ArgumentException($"dWeight has {dWeight.Length} elements, expected {vocab}x{dim}", nameof(dWeight));
        double[] z = Logits(hidden, weight, rows, dim, vocab, temperature);
        var dHidden = new double[rows * dim];
        var g = new double[vocab];
        for (int n = 0; n < rows; n++)
        {
            CheckTarget(targets[n], vocab, n);
            double lse = LogSumExp(z, n * vocab, vocab);
            double h = 0;
            for (int v = 0; v < vocab; v++)
            {
                double logP = z[n * vocab + v] - lse;
                h -= Math.Exp(logP) * logP;
            }
            for (int v = 0; v < vocab; v++)
            {
                double logP = z[n * vocab + v] - lse;
                double p = Math.Exp(logP);
                g[v] = dLogProbs[n] * ((v == targets[n] ? 1.0 : 0.0) - p);
                if (dEntropy != null) g[v] += dEntropy[n] * (-p * (logP + h));
            }
            for (int v = 0; v < vocab; v++)
            {
                for (int d = 0; d < dim; d++)
                {
                    dHidden[n * dim + d] += g[v] * weight[v * dim + d] / temperature;
                    dWeight[v * dim + d] += g[v] * hidden[n * dim + d] / temperature;
                }
            }
        }
        return dHidden;
    }

    /// <summary>log sum_v exp(z[start + v]) over <paramref name="count"/> values, shifted by the max for range.</summary>
    public static double LogSumExp(double[] z, int start, int count)
    {
        double max = double.NegativeInfinity;
        for (int v = 0; v < count; v++) max = Math.Max(max, z[start + v]);
        double sum = 0;
        for (int v = 0; v < count; v++) sum += Math.Exp(z[start + v] - max);
        return max + Math.Log(sum);
    }

    private static void CheckTarget(int target, int vocab, int n)
    {
        if ((uint)target >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(target), $"row {n} has target {target}, outside [0, {vocab})");
    }
}
