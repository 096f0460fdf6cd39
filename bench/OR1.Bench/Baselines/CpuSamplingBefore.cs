using System.Numerics.Tensors;
using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Bench.Baselines;

/// <summary>
/// The Cpu backend's sampler as it was before issue 19 (commit 063028f, src/OR1.Native/Cpu/Sampling.cs), kept unchanged
/// so that <see cref="OR1.Bench.Kernels.SamplingVsBeforeBenchmarks"/> times it beside the current one in the same run:
/// scalar double sums in id order, and a full sort of the vocabulary for top-p and top-k. It follows the rules of its
/// time (double sums of TensorPrimitives' exps): the same distribution as today's integer rules, not the same bits.
/// </summary>
internal static unsafe class CpuSamplingBefore
{
    public static void Sample(float* logits, int rows, int vocab, SamplingOptions options, ulong seed, ulong counter,
        int* tokens, float* logProbs)
    {
        CpuParallel.For(rows, Math.Max(1, CpuElementwise.Grain / Math.Max(1, vocab)), (start, end) =>
        {
            var scratch = RowScratch.ForThisThread(vocab);
            for (int b = start; b < end; b++)
            {
                var row = new ReadOnlySpan<float>(logits + (long)b * vocab, vocab);
                double uniform = CounterRng.Uniform(seed, counter, (ulong)b);
                tokens[b] = SampleRow(row, options, uniform, scratch, out float logProb);
                logProbs[b] = logProb;
            }
        });
    }

    private static int SampleRow(ReadOnlySpan<float> logits, SamplingOptions options, double uniform, RowScratch scratch, out float logProb)
    {
        int vocab = logits.Length;
        if (options.Temperature == 0f)
        {
            int best = TensorPrimitives.IndexOfMax(logits);
            logProb = logits[best] - LogSumExp(logits, scratch.Exps.AsSpan(0, vocab));
            return best;
        }
        var z = scratch.Scaled.AsSpan(0, vocab);
        TensorPrimitives.Divide(logits, options.Temperature, z);
        float max = TensorPrimitives.Max(z);
        var exps = scratch.Exps.AsSpan(0, vocab);
        TensorPrimitives.Subtract(z, max, exps);
        TensorPrimitives.Exp(exps, exps);
        double total = 0;
        foreach (float e in exps) total += e;
        float lse = (float)(max + Math.Log(total));

        int token;
        bool filter = (options.TopK > 0 && options.TopK < vocab) || options.TopP < 1f;
        if (!filter)
        {
            token = Draw(exps, uniform * total);
        }
        else
        {
            var order = scratch.Order.AsSpan(0, vocab);
            for (int j = 0; j < vocab; j++) order[j] = OrderKey(z[j], j);
            order.Sort();
            int kept = options.TopK > 0 ? Math.Min(options.TopK, vocab) : vocab;
            double keptMass = 0;
            for (int r = 0; r < kept; r++) keptMass += exps[(int)(uint)order[r]];
            if (options.TopP < 1f)
            {
                double cumulative = 0;
                int nucleus = 0;
                while (nucleus < kept)
                {
                    cumulative += exps[(int)(uint)order[nucleus]];
                    nucleus++;
                    if (cumulative >= options.TopP * keptMass) break;
                }
                kept = nucleus;
                keptMass = cumulative;
            }
            double target = uniform * keptMass, running = 0;
            token = (int)(uint)order[kept - 1];
            for (int r = 0; r < kept; r++)
            {
                int j = (int)(uint)order[r];
                running += exps[j];
                if (running > target)
                {
                    token = j;
                    break;
                }
            }
        }
        logProb = z[token] - lse;
        return token;
    }

    /// <summary>Inverse CDF over unnormalised weights in id order; falls back to the last positive weight.</summary>
    private static int Draw(ReadOnlySpan<float> weights, double target)
    {
        double running = 0;
        int last = 0;
        for (int j = 0; j < weights.Length; j++)
        {
            if (weights[j] <= 0) continue;
            running += weights[j];
            last = j;
            if (running > target) return j;
        }
        return last;
    }

    /// <summary>A key whose ascending order is (value descending, id ascending).</summary>
    private static ulong OrderKey(float value, int id)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        // Map floats to unsigned integers that sort like the floats, then invert for descending order.
        uint ordered = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
        return ((ulong)~ordered << 32) | (uint)id;
    }

    private static float LogSumExp(ReadOnlySpan<float> logits, Span<float> scratch)
    {
        float max = TensorPrimitives.Max(logits);
        TensorPrimitives.Subtract(logits, max, scratch);
        TensorPrimitives.Exp(scratch, scratch);
        double total = 0;
        foreach (float e in scratch) total += e;
        return (float)(max + Math.Log(total));
    }

    private sealed class RowScratch
    {
        [ThreadStatic] private static RowScratch? t_instance;
        public float[] Scaled = [];
        public float[] Exps = [];
        public ulong[] Order = [];

        public static RowScratch ForThisThread(int vocab)
        {
            var s = t_instance ??= new RowScratch();
            if (s.Scaled.Length < vocab)
            {
                s.Scaled = new float[vocab];
                s.Exps = new float[vocab];
                s.Order = new ulong[vocab];
            }
            return s;
        }
    }
}
