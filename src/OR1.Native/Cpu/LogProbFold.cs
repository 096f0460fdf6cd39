using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace OR1.Native.Cpu;

/// <summary>
/// The one way the Cpu backend turns a row of logits into its log-sum-exp (and entropy): the row is cut into vocabulary
/// parts (<see cref="VocabParts"/>, from the vocabulary size and the thread count only), each part folded chunk by chunk
/// of <see cref="CpuLogProb.VocabChunk"/> tokens into running statistics (max m, s = Σ e^(z-m), u = Σ e^(z-m)(z-m)),
/// and the parts merged in order. The trainer's fused LM-head log-prob (<see cref="CpuLogProb.Forward"/>) folds its GEMM
/// tiles through it and the sampler (<see cref="CpuSampling"/>) folds the rows it draws from through it, so the rollout
/// engine's log-prob of a sampled token is the trainer's bit for bit (equal logits in, equal bits out): nothing here
/// depends on how many rows a call has, where a row sits, or where its logits lie in memory (<see cref="FixedOrderSum"/>).
/// </summary>
internal static unsafe class LogProbFold
{
    /// <summary>
    /// Vocabulary parts a row is folded in: one per <see cref="CpuLogProb.VocabChunk"/> tokens up to the thread count
    /// (the trainer folds the parts in parallel). Depends on nothing about the call but the vocabulary.
    /// </summary>
    public static int VocabParts(int vocab) => Math.Clamp(vocab / CpuLogProb.VocabChunk, 1, CpuParallel.ThreadCount);

    /// <summary>Tokens [start, end) of part <paramref name="part"/> of <paramref name="parts"/>.</summary>
    public static (int Start, int End) PartRange(int vocab, int parts, int part) =>
        ((int)((long)vocab * part / parts), (int)((long)vocab * (part + 1) / parts));

    /// <summary>
    /// Folds one chunk of logits into (m, s, u) (u only when <typeparamref name="TMoments"/> says so); z is overwritten
    /// with z - m, exps receives e^(z - m).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Accumulate<TMoments>(float* z, int n, float* exps, ref float m, ref float s, ref float u) where TMoments : struct, IFlag
    {
        var zs = new Span<float>(z, n);
        float chunkMax = TensorPrimitives.Max(zs); // exact whatever the order
        if (chunkMax > m)
        {
            if (s > 0)
            {
                // Re-base the running sums from the old max to the new one: e^(z-m') = e^(z-m) e^(m-m').
                float delta = m - chunkMax, scale = MathF.Exp(delta);
                if (TMoments.Value) u = scale * (u + delta * s);
                s *= scale;
            }
            m = chunkMax;
        }
        var es = new Span<float>(exps, n);
        TensorPrimitives.Subtract(zs, m, zs); // elementwise: each result is the same wherever the chunk lies
        TensorPrimitives.Exp(zs, es);
        s += FixedOrderSum.Sum(exps, n);
        if (TMoments.Value) u += FixedOrderSum.Dot(exps, z, n);
    }

    /// <summary>
    /// lse = M + ln Σ_p s_p e^(m_p - M) and the entropy ln S - U/S, the parts' statistics (strided by
    /// <paramref name="stride"/>) merged in part order in double.
    /// </summary>
    public static void Merge(float* maxes, float* sums, float* moments, int parts, int stride, out float lse, out float entropy)
    {
        float m = float.NegativeInfinity;
        for (int p = 0; p < parts; p++) m = MathF.Max(m, maxes[p * stride]);
        double s = 0, u = 0;
        for (int p = 0; p < parts; p++)
        {
            float sp = sums[p * stride];
            if (sp == 0) continue;
            double delta = maxes[p * stride] - m, scale = Math.Exp(delta);
            s += scale * sp;
            if (moments != null) u += scale * (moments[p * stride] + delta * sp);
        }
        lse = (float)(m + Math.Log(s));
        entropy = moments == null ? float.NaN : (float)(Math.Log(s) - u / s);
    }

    /// <summary>
    /// The log-sum-exp of one row of logits divided by <paramref name="temperature"/> (1: as they are), folded exactly as
    /// <see cref="CpuLogProb.Forward"/> folds the same logits: the same parts, chunks, order and merge. chunk is scratch of
    /// 2 x <see cref="CpuLogProb.VocabChunk"/> floats.
    /// </summary>
    public static float RowLogSumExp(float* logits, int vocab, float temperature, float* chunk)
    {
        int parts = VocabParts(vocab);
        float* stats = stackalloc float[2 * parts];
        float* exps = chunk + CpuLogProb.VocabChunk;
        float unused = 0;
        for (int p = 0; p < parts; p++)
        {
            var (v0, v1) = PartRange(vocab, parts, p);
            float m = float.NegativeInfinity, s = 0;
            for (int vc = v0; vc < v1; vc += CpuLogProb.VocabChunk)
            {
                int cols = Math.Min(CpuLogProb.VocabChunk, v1 - vc);
                var source = new ReadOnlySpan<float>(logits + vc, cols);
                var target = new Span<float>(chunk, cols);
                if (temperature == 1f) source.CopyTo(target);
                else TensorPrimitives.Divide(source, temperature, target);
                Accumulate<No>(chunk, cols, exps, ref m, ref s, ref unused);
            }
            stats[p] = m;
            stats[parts + p] = s;
        }
        Merge(stats, stats + parts, null, parts, 1, out float lse, out _);
        return lse;
    }

    /// <summary>A compile-time switch (the JIT drops the branches of the other value).</summary>
    public interface IFlag
    {
        static abstract bool Value { get; }
    }

    public readonly struct Yes : IFlag { public static bool Value => true; }

    public readonly struct No : IFlag { public static bool Value => false; }
}
