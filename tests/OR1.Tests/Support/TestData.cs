namespace OR1.Tests.Support;

/// <summary>Seeded, deterministic test inputs: the same seed gives the same data on every run and machine.</summary>
public static class TestData
{
    /// <summary>n floats uniform in [lo, hi] (rounding to float can reach hi).</summary>
    public static float[] Uniform(int n, int seed, float lo = -1, float hi = 1)
    {
        var random = new Random(seed);
        var result = new float[n];
        for (int i = 0; i < n; i++) result[i] = (float)(lo + (hi - lo) * random.NextDouble());
        return result;
    }

    /// <summary>n doubles uniform in [lo, hi).</summary>
    public static double[] UniformDouble(int n, int seed, double lo = -1, double hi = 1)
    {
        var random = new Random(seed);
        var result = new double[n];
        for (int i = 0; i < n; i++) result[i] = lo + (hi - lo) * random.NextDouble();
        return result;
    }

    /// <summary>n floats from N(mean, std^2).</summary>
    public static float[] Normal(int n, int seed, float mean = 0, float std = 1)
        => ToFloat(NormalDouble(n, seed, mean, std));

    /// <summary>n doubles from N(mean, std^2) (Box-Muller).</summary>
    public static double[] NormalDouble(int n, int seed, double mean = 0, double std = 1)
    {
        var random = new Random(seed);
        var result = new double[n];
        for (int i = 0; i < n; i++)
        {
            // 1 - NextDouble() lies in (0, 1], so the log never sees 0.
            double u1 = 1.0 - random.NextDouble();
            double u2 = random.NextDouble();
            result[i] = mean + std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
        }
        return result;
    }

    /// <summary>n ints uniform in [0, maxExclusive).</summary>
    public static int[] Ints(int n, int maxExclusive, int seed) => Ints(n, 0, maxExclusive, seed);

    /// <summary>n ints uniform in [minInclusive, maxExclusive).</summary>
    public static int[] Ints(int n, int minInclusive, int maxExclusive, int seed)
    {
        var random = new Random(seed);
        var result = new int[n];
        for (int i = 0; i < n; i++) result[i] = random.Next(minInclusive, maxExclusive);
        return result;
    }

    /// <summary>A random permutation of 0 .. n-1.</summary>
    public static int[] Permutation(int n, int seed)
    {
        var result = Enumerable.Range(0, n).ToArray();
        new Random(seed).Shuffle(result);
        return result;
    }

    /// <summary>n distinct ints from [0, maxExclusive) in random order (row indices for a scatter, for example).</summary>
    public static int[] DistinctInts(int n, int maxExclusive, int seed)
    {
        if (n > maxExclusive) throw new ArgumentException($"cannot draw {n} distinct values from [0, {maxExclusive})", nameof(n));
        return Permutation(maxExclusive, seed)[..n];
    }

    /// <summary>count segment lengths uniform in [minLength, maxLength] (inclusive).</summary>
    public static int[] SegmentLengths(int count, int minLength, int maxLength, int seed)
        => Ints(count, minLength, maxLength + 1, seed);

    /// <summary>Offsets [count + 1] (starting at 0) of segments with the given lengths.</summary>
    public static int[] OffsetsFromLengths(ReadOnlySpan<int> lengths)
    {
        var offsets = new int[lengths.Length + 1];
        for (int i = 0; i < lengths.Length; i++) offsets[i + 1] = offsets[i] + lengths[i];
        return offsets;
    }

    /// <summary>Offsets of count random segments with lengths in [minLength, maxLength].</summary>
    public static int[] RandomOffsets(int count, int minLength, int maxLength, int seed)
        => OffsetsFromLengths(SegmentLengths(count, minLength, maxLength, seed));

    /// <summary>Position of every row within its segment (0, 1, ... restarting at each segment): RoPE positions of a packed batch.</summary>
    public static int[] PositionsFromOffsets(ReadOnlySpan<int> offsets)
    {
        var positions = new int[offsets[^1]];
        for (int s = 0; s + 1 < offsets.Length; s++)
        {
            for (int t = offsets[s]; t < offsets[s + 1]; t++) positions[t] = t - offsets[s];
        }
        return positions;
    }

    /// <summary>Widens exactly.</summary>
    public static double[] ToDouble(ReadOnlySpan<float> values)
    {
        var result = new double[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = values[i];
        return result;
    }

    /// <summary>Rounds to nearest float.</summary>
    public static float[] ToFloat(ReadOnlySpan<double> values)
    {
        var result = new float[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = (float)values[i];
        return result;
    }

    /// <summary>
    /// Each value rounded to the nearest bfloat16 (ties to even) and widened back, so that a float reference
    /// can be fed exactly what a bf16 backend stores. NaN stays NaN.
    /// </summary>
    public static float[] RoundToBFloat16(ReadOnlySpan<float> values)
    {
        var result = new float[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            float v = values[i];
            if (float.IsNaN(v))
            {
                result[i] = v;
                continue;
            }
            uint bits = BitConverter.SingleToUInt32Bits(v);
            uint rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
            result[i] = BitConverter.UInt32BitsToSingle(rounded);
        }
        return result;
    }
}
