using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Next-token sampling with the Cpu backend's rule: temperature, then top-k, then top-p on the
/// top-k-renormalised distribution (HF's warper order), then inverse-CDF sampling with the
/// counter-based uniform of <see cref="CounterRng"/> (the same 64-bit mixing, computed in the kernel),
/// candidates ordered by (probability desc, id asc).
/// <para>Small vocabularies (at most the profile's limit) use one thread per row, sequentially, so a
/// batch of many short rows costs no synchronisation at all. Larger vocabularies use one group per row,
/// and never sort: with keys k_j = (~ordered(z_j) &lt;&lt; idBits) | j, whose ascending order is the candidate
/// order, every cut is "the smallest key K whose prefix mass (or count) reaches a target", found bit by
/// bit from the most significant, one group reduction per bit: top-k is a count search, top-p a mass
/// search under the top-k cut, and the draw a strict mass search under the nucleus cut. Unfiltered draws
/// scan the vocabulary in id order with group prefix sums.</para>
/// </summary>
internal static class IlgpuSampling
{
    /// <summary>Options of one call as kernel scalars.</summary>
    public struct SampleArgs
    {
        public int Rows, Vocab, TopK;
        public float Temperature, TopP;
        public ulong Seed, Counter;
        /// <summary>1: row b draws from (seed, streams[2b + 1], streams[2b]), its request's stream; 0: from (seed, Counter, b).</summary>
        public int Streamed;
        /// <summary>1: truncated[b] receives the mass top-k/top-p cut from the draw (1 - kept / total); 0: the view is a stand-in.</summary>
        public int Truncated;
    }

    /// <summary>The uniform of row b: its request's stream when the call has streams, else the call's counter and b.</summary>
    private static double RowUniform(ArrayView<int> streams, SampleArgs a, long b) =>
        a.Streamed != 0 ? Uniform(a.Seed, (uint)streams[2 * b + 1], (uint)streams[2 * b]) : Uniform(a.Seed, a.Counter, (ulong)b);

    // ---------------------------------------------------------------- CounterRng, on the device

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary><see cref="CounterRng.Uniform"/>, bit for bit.</summary>
    private static double Uniform(ulong seed, ulong counter, ulong row)
    {
        ulong z = Mix(seed + 0x9E3779B97F4A7C15UL);
        z = Mix(z ^ (counter * 0xD1B54A32D192ED03UL));
        z = Mix(z ^ (row * 0x8CB92BA72F3D8DD7UL + 0x632BE59BD9B4E019UL));
        return (z >> 11) * (1.0 / (1UL << 53));
    }

    /// <summary>32 bits whose ascending order is the descending order of the float (Cpu's OrderKey, high half).</summary>
    private static ulong Descending(float value)
    {
        uint bits = (uint)BitConverter.SingleToInt32Bits(value);
        uint ordered = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
        return ~ordered;
    }

    // ---------------------------------------------------------------- one thread per row

    private static ulong Key(ArrayView<float> logits, long row, int j, float temperature) =>
        (Descending(logits[row + j] / temperature) << 32) | (uint)j;

    /// <summary>The smallest key greater than <paramref name="previous"/> (or the smallest key at all).</summary>
    private static ulong NextKey(ArrayView<float> logits, long row, int vocab, float temperature, ulong previous, bool first)
    {
        ulong best = ulong.MaxValue;
        for (int j = 0; j < vocab; j++)
        {
            ulong key = Key(logits, row, j, temperature);
            if ((first || key > previous) && key < best) best = key;
        }
        return best;
    }

    [IlgpuKernel]
    public static void SampleRowsKernel(ArrayView<float> logits, ArrayView<int> streams, ArrayView<int> tokens, ArrayView<float> logProbs,
        ArrayView<float> truncated, SampleArgs a)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        int vocab = a.Vocab;
        for (long b = Grid.GlobalIndex.X; b < a.Rows; b += stride)
        {
            long row = b * vocab;
            double uniform = RowUniform(streams, a, b);
            if (a.Temperature == 0f)
            {
                int best = 0;
                float bestValue = logits[row];
                for (int j = 1; j < vocab; j++)
                {
                    if (logits[row + j] > bestValue)
                    {
                        bestValue = logits[row + j];
                        best = j;
                    }
                }
                double sum = 0;
                for (int j = 0; j < vocab; j++) sum += MathF.Exp(logits[row + j] - bestValue);
                tokens[b] = best;
                logProbs[b] = logits[row + best] - (float)(bestValue + Math.Log(sum));
                if (a.Truncated != 0) truncated[b] = 0f;
                continue;
            }
            float t = a.Temperature;
            float max = float.NegativeInfinity;
            for (int j = 0; j < vocab; j++) max = MathF.Max(max, logits[row + j] / t);
            double total = 0;
            for (int j = 0; j < vocab; j++) total += MathF.Exp(logits[row + j] / t - max);
            float lse = (float)(max + Math.Log(total));
            int token;
            double drawMass = total;
            bool filter = (a.TopK > 0 && a.TopK < vocab) || a.TopP < 1f;
            if (!filter)
            {
                double target = uniform * total, running = 0;
                int last = 0;
                token = -1;
                for (int j = 0; j < vocab && token < 0; j++)
                {
                    float e = MathF.Exp(logits[row + j] / t - max);
                    if (e <= 0f) continue;
                    running += e;
                    last = j;
                    if (running > target) token = j;
                }
                if (token < 0) token = last;
            }
            else
            {
                int kept = a.TopK > 0 ? Math.Min(a.TopK, vocab) : vocab;
                double keptMass = 0;
                ulong key = 0;
                for (int r = 0; r < kept; r++)
                {
                    key = NextKey(logits, row, vocab, t, key, r == 0);
                    keptMass += MathF.Exp(logits[row + (int)(uint)key] / t - max);
                }
                if (a.TopP < 1f)
                {
                    double cumulative = 0;
                    int nucleus = 0;
                    key = 0;
                    while (nucleus < kept)
                    {
                        key = NextKey(logits, row, vocab, t, key, nucleus == 0);
                        cumulative += MathF.Exp(logits[row + (int)(uint)key] / t - max);
                        nucleus++;
                        if (cumulative >= a.TopP * keptMass) break;
                    }
                    kept = nucleus;
                    keptMass = cumulative;
                }
                drawMass = keptMass;
                double target = uniform * keptMass, sum = 0;
                token = -1;
                key = 0;
                for (int r = 0; r < kept; r++)
                {
                    key = NextKey(logits, row, vocab, t, key, r == 0);
                    sum += MathF.Exp(logits[row + (int)(uint)key] / t - max);
                    if (token < 0 && sum > target) token = (int)(uint)key;
                }
                if (token < 0) token = (int)(uint)key; // the last kept candidate
            }
            tokens[b] = token;
            logProbs[b] = logits[row + token] / t - lse;
            if (a.Truncated != 0) truncated[b] = (float)(1.0 - drawMass / total);
        }
    }

    // ---------------------------------------------------------------- one group per row

    private static ulong GroupKey(ArrayView<float> logits, long row, int j, float temperature, int idBits) =>
        (Descending(logits[row + j] / temperature) << idBits) | (uint)j;

    /// <summary>
    /// Smallest key K (at most <paramref name="cut"/>) with F(K) reaching <paramref name="target"/>, where
    /// F(K) = mass (or count, when <paramref name="count"/>) of keys &lt;= min(K, cut); strict: F(K) &gt; target.
    /// Returns a value above every key when no key reaches it.
    /// </summary>
    private static ulong Search(ArrayView<float> logits, long row, int vocab, float temperature, float max, int idBits, ulong cut,
        double target, bool strict, bool count, ArrayView<double> scratch, out bool found)
    {
        int keyBits = 32 + idBits;
        ulong result = 0;
        for (int bit = keyBits - 1; bit >= 0; bit--)
        {
            ulong candidate = result | ((1UL << bit) - 1);
            double local = 0;
            for (int j = Group.IdxX; j < vocab; j += Group.DimX)
            {
                ulong key = GroupKey(logits, row, j, temperature, idBits);
                if (key <= candidate && key <= cut) local += count ? 1.0 : MathF.Exp(logits[row + j] / temperature - max);
            }
            double f = Collectives.GroupSum(local, scratch);
            bool reached = strict ? f > target : f >= target;
            if (!reached) result |= 1UL << bit;
        }
        // All ones either is the answer or means no key reaches the target: one more pass tells which.
        found = true;
        if (result == (keyBits == 64 ? ulong.MaxValue : (1UL << keyBits) - 1))
        {
            double local = 0;
            for (int j = Group.IdxX; j < vocab; j += Group.DimX)
            {
                ulong key = GroupKey(logits, row, j, temperature, idBits);
                if (key <= result && key <= cut) local += count ? 1.0 : MathF.Exp(logits[row + j] / temperature - max);
            }
            double f = Collectives.GroupSum(local, scratch);
            found = strict ? f > target : f >= target;
        }
        return result;
    }

    [IlgpuKernel]
    public static void SampleGroupsKernel(ArrayView<float> logits, ArrayView<int> streams, ArrayView<int> tokens, ArrayView<float> logProbs,
        ArrayView<float> truncated, SampleArgs a, int idBits)
    {
        var doubles = SharedMemory.Allocate<double>(32);
        var floats = SharedMemory.Allocate<float>(32);
        var ints = SharedMemory.Allocate<int>(32);
        int vocab = a.Vocab, tid = Group.IdxX, threads = Group.DimX;
        float t = a.Temperature;
        for (int b = Grid.IdxX; b < a.Rows; b += Grid.DimX)
        {
            long row = (long)b * vocab;
            double uniform = RowUniform(streams, a, b);
            if (t == 0f)
            {
                float bestValue = float.NegativeInfinity;
                int best = int.MaxValue;
                for (int j = tid; j < vocab; j += threads)
                {
                    float x = logits[row + j];
                    if (best == int.MaxValue || x > bestValue)
                    {
                        bestValue = x;
                        best = j;
                    }
                }
                float max = Collectives.GroupMax(bestValue, floats);
                int token = Collectives.GroupMin(bestValue == max ? best : int.MaxValue, ints);
                double local = 0;
                for (int j = tid; j < vocab; j += threads) local += MathF.Exp(logits[row + j] - max);
                double sum = Collectives.GroupSum(local, doubles);
                if (tid == 0)
                {
                    tokens[b] = token;
                    logProbs[b] = logits[row + token] - (float)(max + Math.Log(sum));
                    if (a.Truncated != 0) truncated[b] = 0f;
                }
                continue;
            }
            float localMax = float.NegativeInfinity;
            for (int j = tid; j < vocab; j += threads) localMax = MathF.Max(localMax, logits[row + j] / t);
            float zMax = Collectives.GroupMax(localMax, floats);
            double localTotal = 0;
            for (int j = tid; j < vocab; j += threads) localTotal += MathF.Exp(logits[row + j] / t - zMax);
            double total = Collectives.GroupSum(localTotal, doubles);
            float lse = (float)(zMax + Math.Log(total));
            int chosen;
            double drawMass = total;
            bool filter = (a.TopK > 0 && a.TopK < vocab) || a.TopP < 1f;
            if (!filter)
            {
                // Inverse CDF in id order: chunks of one element per thread, group prefix sums.
                double target = uniform * total, running = 0;
                chosen = int.MaxValue;
                int lastPositive = -1;
                for (int c0 = 0; c0 < vocab && chosen == int.MaxValue; c0 += threads)
                {
                    int j = c0 + tid;
                    float e = j < vocab ? MathF.Exp(logits[row + j] / t - zMax) : 0f;
                    double inclusive = Collectives.GroupInclusiveScan(e, doubles, out double chunkTotal);
                    if (e > 0f) lastPositive = j;
                    chosen = Collectives.GroupMin(e > 0f && running + inclusive > target ? j : int.MaxValue, ints);
                    running += chunkTotal;
                }
                lastPositive = Collectives.GroupMax(lastPositive, ints);
                if (chosen == int.MaxValue) chosen = Math.Max(0, lastPositive);
            }
            else
            {
                ulong idMask = (1UL << idBits) - 1;
                ulong cut = ulong.MaxValue;
                if (a.TopK > 0 && a.TopK < vocab)
                    cut = Search(logits, row, vocab, t, zMax, idBits, ulong.MaxValue, a.TopK, strict: false, count: true, doubles, out _);
                double localKept = 0;
                for (int j = tid; j < vocab; j += threads)
                    if (GroupKey(logits, row, j, t, idBits) <= cut) localKept += MathF.Exp(logits[row + j] / t - zMax);
                double keptMass = Collectives.GroupSum(localKept, doubles);
                if (a.TopP < 1f)
                {
                    ulong nucleus = Search(logits, row, vocab, t, zMax, idBits, cut, a.TopP * keptMass, strict: false, count: false, doubles, out bool inNucleus);
                    if (inNucleus && nucleus < cut)
                    {
                        cut = nucleus;
                        double localNucleus = 0;
                        for (int j = tid; j < vocab; j += threads)
                            if (GroupKey(logits, row, j, t, idBits) <= cut) localNucleus += MathF.Exp(logits[row + j] / t - zMax);
                        keptMass = Collectives.GroupSum(localNucleus, doubles);
                    }
                }
                drawMass = keptMass;
                ulong drawn = Search(logits, row, vocab, t, zMax, idBits, cut, uniform * keptMass, strict: true, count: false, doubles, out bool found);
                if (!found)
                {
                    // Rounding left the draw unmatched: take the last kept candidate, the largest key <= cut (Cpu's fallback).
                    double localCount = 0;
                    for (int j = tid; j < vocab; j += threads)
                        if (GroupKey(logits, row, j, t, idBits) <= cut) localCount += 1.0;
                    double keptCount = Collectives.GroupSum(localCount, doubles);
                    drawn = Search(logits, row, vocab, t, zMax, idBits, cut, keptCount, strict: false, count: true, doubles, out _);
                }
                chosen = (int)(drawn & idMask);
            }
            if (tid == 0)
            {
                tokens[b] = chosen;
                logProbs[b] = logits[row + chosen] / t - lse;
                if (a.Truncated != 0) truncated[b] = (float)(1.0 - drawMass / total);
            }
            Group.Barrier();
        }
    }

    // ---------------------------------------------------------------- host side

    public static void Sample(IlgpuDevice device, ArrayView<float> logits, ArrayView<int> streams, ArrayView<int> tokens, ArrayView<float> logProbs,
        ArrayView<float> truncated, SampleArgs args, int threadRowVocabulary)
    {
        if (args.Rows == 0) return;
        var p = device.Profile;
        if (args.Vocab <= threadRowVocabulary)
        {
            device.Load<ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, SampleArgs>(SampleRowsKernel)(
                new KernelConfig(p.Groups(args.Rows, p.BlockThreads), p.BlockThreads), logits, streams, tokens, logProbs, truncated, args);
            return;
        }
        int idBits = Math.Max(1, 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)(args.Vocab - 1)));
        device.Load<ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, SampleArgs, int>(SampleGroupsKernel)(
            new KernelConfig(p.Groups(args.Rows), p.BlockThreads), logits, streams, tokens, logProbs, truncated, args, idBits);
    }
}
