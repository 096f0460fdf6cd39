namespace OR1.Tests.Reference;

/// <summary>The distribution a sampler draws from, made explicit: temperature, then top-k, then top-p.</summary>
public static class SamplingReference
{
    /// <summary>
    /// The probability of each token [V] under the sampling rule. Temperature &lt;= 0 is greedy: all mass on
    /// the argmax (lowest id among equal maxima). Otherwise p = softmax(logits / T); topK &gt; 0 keeps the K most
    /// likely tokens; topP &lt; 1 then keeps, of the renormalised survivors, the smallest set of most likely tokens
    /// whose mass reaches topP (at least one). Equal probabilities rank the lower token id first. The kept
    /// tokens are renormalised; the rest are exactly 0.
    /// </summary>
    public static double[] Probabilities(double[] logits, double temperature, int topK = 0, double topP = 1)
    {
        int vocab = logits.Length;
        if (vocab == 0) throw new ArgumentException("an empty logits row has nothing to sample", nameof(logits));
        var result = new double[vocab];
        if (temperature <= 0)
        {
            result[Argmax(logits)] = 1;
            return result;
        }

        double[] p = Softmax(logits, temperature);
        // Rank by the scaled logit rather than by p: p is monotone in it, and ranking by logit keeps
        // distinct logits distinct even where their probabilities underflow to the same value.
        int[] order = Enumerable.Range(0, vocab).ToArray();
        Array.Sort(order, (a, b) =>
        {
            int byLogit = logits[b].CompareTo(logits[a]);
            return byLogit != 0 ? byLogit : a.CompareTo(b);
        });

        int kept = topK > 0 ? Math.Min(topK, vocab) : vocab;
        double keptMass = 0;
        for (int r = 0; r < kept; r++) keptMass += p[order[r]];

        // topP >= 1 disables the nucleus filter outright: a cumulative sum that rounds to just below 1
        // must not start dropping tail tokens.
        if (topP < 1)
        {
            double cumulative = 0;
            int nucleus = 0;
            while (nucleus < kept)
            {
                cumulative += p[order[nucleus]] / keptMass;
                nucleus++;
                if (cumulative >= topP) break;
            }
            kept = nucleus;
            keptMass = 0;
            for (int r = 0; r < kept; r++) keptMass += p[order[r]];
        }

        for (int r = 0; r < kept; r++) result[order[r]] = p[order[r]] / keptMass;
        return result;
    }

    /// <summary>log softmax(row / temperature) at <paramref name="token"/>, unfiltered; temperature &lt;= 0 (greedy) uses 1.</summary>
    public static double LogSoftmaxAt(double[] row, int token, double temperature)
    {
        if ((uint)token >= (uint)row.Length) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} outside [0, {row.Length})");
        double t = temperature <= 0 ? 1 : temperature;
        double max = double.NegativeInfinity;
        foreach (double z in row) max = Math.Max(max, z / t);
        double sum = 0;
        foreach (double z in row) sum += Math.Exp(z / t - max);
        return row[token] / t - (max + Math.Log(sum));
    }

    /// <summary>The index of the largest logit; the lowest such index on ties.</summary>
    public static int Argmax(double[] logits)
    {
        int best = 0;
        for (int v = 1; v < logits.Length; v++)
        {
            if (logits[v] > logits[best]) best = v;
        }
        return best;
    }

    private static double[] Softmax(double[] logits, double temperature)
    {
        double max = double.NegativeInfinity;
        foreach (double z in logits) max = Math.Max(max, z / temperature);
        var p = new double[logits.Length];
        double sum = 0;
        for (int v = 0; v < logits.Length; v++) sum += p[v] = Math.Exp(logits[v] / temperature - max);
        for (int v = 0; v < p.Length; v++) p[v] /= sum;
        return p;
    }
}
