using ILGPU;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Warp and group collectives used inside kernels. Warp reductions are XOR butterflies, so every lane
/// ends with the same bits (each step adds the same two values in either order, and IEEE addition is
/// commutative); group reductions add the per-warp results in warp order. Nothing uses atomics, so every
/// kernel built on these is deterministic run to run.
/// <para>Every lane of a warp (and every thread of a group, for the group versions) must call them:
/// callers keep control flow uniform and mask with values instead of branches.</para>
/// </summary>
internal static class Collectives
{
    public static float WarpSum(float value)
    {
        for (int offset = Warp.WarpSize >> 1; offset > 0; offset >>= 1) value += Warp.ShuffleXor(value, offset);
        return value;
    }

    public static double WarpSum(double value)
    {
        for (int offset = Warp.WarpSize >> 1; offset > 0; offset >>= 1) value += Warp.ShuffleXor(value, offset);
        return value;
    }

    public static int WarpSum(int value)
    {
        for (int offset = Warp.WarpSize >> 1; offset > 0; offset >>= 1) value += Warp.ShuffleXor(value, offset);
        return value;
    }

    public static float WarpMax(float value)
    {
        for (int offset = Warp.WarpSize >> 1; offset > 0; offset >>= 1) value = MathF.Max(value, Warp.ShuffleXor(value, offset));
        return value;
    }

    public static int WarpMin(int value)
    {
        for (int offset = Warp.WarpSize >> 1; offset > 0; offset >>= 1) value = Math.Min(value, Warp.ShuffleXor(value, offset));
        return value;
    }

    public static int WarpMax(int value)
    {
        for (int offset = Warp.WarpSize >> 1; offset > 0; offset >>= 1) value = Math.Max(value, Warp.ShuffleXor(value, offset));
        return value;
    }

    /// <summary>Number of warps in the (1D) group.</summary>
    public static int WarpsPerGroup => Group.DimX / Warp.WarpSize;

    /// <summary>Sum over the group; every thread gets it. <paramref name="scratch"/> holds one float per warp.</summary>
    public static float GroupSum(float value, ArrayView<float> scratch)
    {
        value = WarpSum(value);
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = value;
        Group.Barrier();
        float total = 0f;
        int warps = WarpsPerGroup;
        for (int w = 0; w < warps; w++) total += scratch[w];
        Group.Barrier();
        return total;
    }

    public static double GroupSum(double value, ArrayView<double> scratch)
    {
        value = WarpSum(value);
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = value;
        Group.Barrier();
        double total = 0;
        int warps = WarpsPerGroup;
        for (int w = 0; w < warps; w++) total += scratch[w];
        Group.Barrier();
        return total;
    }

    public static int GroupSum(int value, ArrayView<int> scratch)
    {
        value = WarpSum(value);
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = value;
        Group.Barrier();
        int total = 0;
        int warps = WarpsPerGroup;
        for (int w = 0; w < warps; w++) total += scratch[w];
        Group.Barrier();
        return total;
    }

    public static float GroupMax(float value, ArrayView<float> scratch)
    {
        value = WarpMax(value);
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = value;
        Group.Barrier();
        float result = float.NegativeInfinity;
        int warps = WarpsPerGroup;
        for (int w = 0; w < warps; w++) result = MathF.Max(result, scratch[w]);
        Group.Barrier();
        return result;
    }

    public static int GroupMin(int value, ArrayView<int> scratch)
    {
        value = WarpMin(value);
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = value;
        Group.Barrier();
        int result = int.MaxValue;
        int warps = WarpsPerGroup;
        for (int w = 0; w < warps; w++) result = Math.Min(result, scratch[w]);
        Group.Barrier();
        return result;
    }

    public static int GroupMax(int value, ArrayView<int> scratch)
    {
        value = WarpMax(value);
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = value;
        Group.Barrier();
        int result = int.MinValue;
        int warps = WarpsPerGroup;
        for (int w = 0; w < warps; w++) result = Math.Max(result, scratch[w]);
        Group.Barrier();
        return result;
    }

    /// <summary>
    /// Inclusive prefix sum over the group in thread order (every thread gets its own prefix), and the
    /// group total through <paramref name="total"/>. Warp scan by Kogge-Stone shuffles, then warp offsets.
    /// <paramref name="scratch"/> holds one double per warp.
    /// </summary>
    public static double GroupInclusiveScan(double value, ArrayView<double> scratch, out double total)
    {
        int lane = Warp.LaneIdx;
        for (int offset = 1; offset < Warp.WarpSize; offset <<= 1)
        {
            double other = Warp.ShuffleUp(value, offset);
            if (lane >= offset) value += other;
        }
        if (lane == Warp.WarpSize - 1) scratch[Warp.WarpIdx] = value;
        Group.Barrier();
        double before = 0, sum = 0;
        int warps = WarpsPerGroup, me = Warp.WarpIdx;
        for (int w = 0; w < warps; w++)
        {
            if (w < me) before += scratch[w];
            sum += scratch[w];
        }
        Group.Barrier();
        total = sum;
        return before + value;
    }

    /// <summary>
    /// Online-softmax statistics (max m, s = Σ e^(z-m), u = Σ e^(z-m)(z-m)) of two disjoint sets merged into
    /// one; symmetric in its arguments bit for bit, so butterfly merges leave every lane equal.
    /// </summary>
    public static void MergeSoftmaxStats(ref float m, ref float s, ref float u, float m2, float s2, float u2)
    {
        float max = MathF.Max(m, m2);
        if (max == float.NegativeInfinity) return; // both empty
        float d1 = m - max, d2 = m2 - max;
        float f1 = s == 0f ? 0f : MathF.Exp(d1);
        float f2 = s2 == 0f ? 0f : MathF.Exp(d2);
        float newS = f1 * s + f2 * s2;
        float newU = (s == 0f ? 0f : f1 * (u + d1 * s)) + (s2 == 0f ? 0f : f2 * (u2 + d2 * s2));
        m = max;
        s = newS;
        u = newU;
    }

    /// <summary>Warp butterfly of <see cref="MergeSoftmaxStats"/>; every lane gets the merged triple.</summary>
    public static void WarpMergeSoftmaxStats(ref float m, ref float s, ref float u)
    {
        for (int offset = Warp.WarpSize >> 1; offset > 0; offset >>= 1)
        {
            float m2 = Warp.ShuffleXor(m, offset), s2 = Warp.ShuffleXor(s, offset), u2 = Warp.ShuffleXor(u, offset);
            MergeSoftmaxStats(ref m, ref s, ref u, m2, s2, u2);
        }
    }

    /// <summary>Folds one logit into running online-softmax statistics.</summary>
    public static void AddToSoftmaxStats(ref float m, ref float s, ref float u, float z)
    {
        if (z > m)
        {
            if (s != 0f)
            {
                float delta = m - z, scale = MathF.Exp(delta);
                u = scale * (u + delta * s);
                s *= scale;
            }
            m = z;
        }
        float d = z - m, e = MathF.Exp(d);
        s += e;
        u += e * d;
    }
}
