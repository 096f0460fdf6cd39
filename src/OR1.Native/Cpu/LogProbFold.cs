using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
    /// Folds one chunk of logits z / <paramref name="temperature"/> (1: z as it is) into (m, s, u) (u only when
    /// <typeparamref name="TMoments"/> says so), reading z once and writing nothing: the chunk's max, a re-base of the
    /// running sums when it rises, then e = exp(z - m) (<see cref="FastMath.ExpNonPositive(Vector512{float})"/>, about
    /// one ulp) summed with e (z - m) in one fused pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Accumulate<TMoments>(float* z, int n, float temperature, ref float m, ref float s, ref float u) where TMoments : struct, IFlag
    {
        // Division by T > 0 is monotone, so the tempered chunk's max is the tempered max (exact whatever the order).
        float chunkMax = TensorPrimitives.Max(new ReadOnlySpan<float>(z, n));
        if (temperature != 1f) chunkMax /= temperature;
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
        SumExps<TMoments>(z, n, temperature, m, out float sum, out float moment);
        s += sum;
        if (TMoments.Value) u += moment;
    }

    /// <summary>
    /// Σ e and Σ e d over the chunk, d = z / T - m, e = exp(d): lanes from z[0] (16 with AVX-512, 8 with AVX2), a ragged
    /// end as one masked vector, the lanes summed in a fixed tree; so a chunk's sums depend on nothing but its values.
    /// </summary>
    private static void SumExps<TMoments>(float* z, int n, float temperature, float m, out float sum, out float moment) where TMoments : struct, IFlag
    {
        int i = 0;
        if (Avx512F.IsSupported)
        {
            var mv = Vector512.Create(m);
            var inv = Vector512.Create(temperature);
            Vector512<float> es = default, us = default;
            for (; i < n; i += 16)
            {
                var live = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(n - i)).AsSingle();
                var x = i + 16 <= n ? Vector512.Load(z + i) : Avx512F.MaskLoad(z + i, live, Vector512<float>.Zero);
                var d = Vector512.ConditionalSelect(live, (temperature == 1f ? x : x / inv) - mv, Vector512.Create(-100f));
                var e = FastMath.ExpNonPositive(d) & live;
                es += e;
                if (TMoments.Value) us = Vector512.FusedMultiplyAdd(e, d, us);
            }
            sum = Vector512.Sum(es);
            moment = TMoments.Value ? Vector512.Sum(us) : 0f;
            return;
        }
        if (FastMath.IsSupported)
        {
            var mv = Vector256.Create(m);
            var inv = Vector256.Create(temperature);
            Vector256<float> es = default, us = default;
            for (; i < n; i += 8)
            {
                var live = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(n - i)).AsSingle();
                var x = i + 8 <= n ? Vector256.Load(z + i) : Avx.MaskLoad(z + i, live);
                var d = Vector256.ConditionalSelect(live, (temperature == 1f ? x : x / inv) - mv, Vector256.Create(-100f));
                var e = FastMath.ExpNonPositive(d) & live;
                es += e;
                if (TMoments.Value) us = Fma.MultiplyAdd(e, d, us);
            }
            sum = Vector256.Sum(es);
            moment = TMoments.Value ? Vector256.Sum(us) : 0f;
            return;
        }
        float total = 0, weighted = 0;
        for (; i < n; i++)
        {
            float d = (temperature == 1f ? z[i] : z[i] / temperature) - m, e = MathF.Exp(d);
            total += e;
            if (TMoments.Value) weighted = MathF.FusedMultiplyAdd(e, d, weighted);
        }
        sum = total;
        moment = weighted;
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
    /// <see cref="CpuLogProb.Forward"/> folds the same logits: the same parts, chunks, order and merge.
    /// </summary>
    public static float RowLogSumExp(float* logits, int vocab, float temperature)
    {
        int parts = VocabParts(vocab);
        float* stats = stackalloc float[2 * parts];
        float unused = 0;
        for (int p = 0; p < parts; p++)
        {
            var (v0, v1) = PartRange(vocab, parts, p);
            float m = float.NegativeInfinity, s = 0;
            for (int vc = v0; vc < v1; vc += CpuLogProb.VocabChunk)
                Accumulate<No>(logits + vc, Math.Min(CpuLogProb.VocabChunk, v1 - vc), temperature, ref m, ref s, ref unused);
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
