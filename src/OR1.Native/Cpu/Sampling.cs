using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

/// <summary>
/// Next-token sampling per row: temperature, then top-k, then top-p on the top-k-renormalised distribution (HF's
/// warper order), then inverse-CDF sampling with the counter-based uniform, by the integer rules of
/// <see cref="SamplingRules"/>, so kernels/sampling.cu draws the same tokens. Every mode starts with two vectorised
/// passes over the row (16 lanes with AVX-512): the largest logit, then each token's relative probability
/// e = exp(z - max z) (<see cref="FastMath.ExpNonPositive(Vector256{float})"/>, one exp for every token) and its
/// integer weight, summed exactly. The recipe's default (no filter) keeps only the weight of each block of
/// <see cref="WalkBlock"/> tokens and walks the blocks, then one block, to the draw; greedy finds the first maximum
/// in its log-sum-exp pass. Filtering keeps the largest e of each block; when the blocks' maxima alone reach top-k or
/// the nucleus (a model's row: a few likely tokens), the tokens of those few blocks decide the top-k boundary, the
/// nucleus boundary and the drawn token (<see cref="CpuSamplingSelect.TryDrawFromHead"/>); otherwise (a flat row)
/// <see cref="CpuSamplingSelect"/> searches the key order by brackets placed from a sample. Nothing is sorted. Rows run in parallel, one row per work item;
/// nothing is allocated per call once a thread's scratch has grown.
/// </summary>
internal static unsafe class CpuSampling
{
    /// <summary>The unfiltered draw skips blocks of this many tokens by their total weight.</summary>
    internal const int WalkBlock = 256;

    [ThreadStatic] private static SampleJob? t_job;

    public static void Sample(float* logits, int rows, int vocab, SamplingOptions options, ulong seed, ulong counter,
        int* streams, int* tokens, float* logProbs, float* truncatedMass = null)
    {
        var job = t_job ??= new SampleJob();
        job.Logits = logits;
        job.Vocab = vocab;
        job.Options = options;
        job.Seed = seed;
        job.Counter = counter;
        job.Streams = streams;
        job.Tokens = tokens;
        job.LogProbs = logProbs;
        job.TruncatedMass = truncatedMass;
        CpuParallel.ForEach(rows, job.Body);
    }

    /// <summary>One call's arguments and a delegate made once per calling thread, so a call allocates nothing.</summary>
    private sealed class SampleJob
    {
        public float* Logits;
        public int Vocab;
        public SamplingOptions Options;
        public ulong Seed, Counter;
        public int* Streams; // (request id, position) per row, or null: row b draws from (Counter, b)
        public int* Tokens;
        public float* LogProbs;
        public float* TruncatedMass; // or null
        public readonly Action<int> Body;

        public SampleJob() => Body = Row;

        private void Row(int b)
        {
            var select = CpuSamplingSelect.ForThisThread(Vocab);
            ulong bits = Streams == null
                ? SamplingRules.UniformBits(Seed, Counter, (ulong)b)
                : SamplingRules.UniformBits(Seed, (uint)Streams[2 * b + 1], (uint)Streams[2 * b]);
            float* row = Logits + (long)b * Vocab;
            int token = SampleRow(row, Vocab, Options, bits, select, out double truncated);
            Tokens[b] = token;
            if (TruncatedMass != null) TruncatedMass[b] = (float)truncated;
            // The trainer's log-prob of the token (its fold of the same logits, bit for bit), the full vocabulary's
            // also when top-k or top-p narrowed the draw; greedy reports the untempered distribution's.
            float t = Options.Temperature == 0f ? 1f : Options.Temperature;
            LogProbs[b] = Tempered(row[token], t) - LogProbFold.RowLogSumExp(row, Vocab, t);
        }
    }

    /// <summary>The drawn token; truncated is 1 - (weight drawn from) / (total weight): what top-k/top-p cut, 0 without them.</summary>
    private static int SampleRow(float* x, int vocab, SamplingOptions options, ulong bits53, CpuSamplingSelect select, out double truncated)
    {
        var row = new ReadOnlySpan<float>(x, vocab);
        float t = options.Temperature;
        truncated = 0;
        if (t == 0f)
        {
            float max = TensorPrimitives.Max(row);
            // The first id whose logit is max, bit for bit (+0 after -0 as the kernels order them); none with NaN logits.
            int best = MemoryMarshal.Cast<float, uint>(row).IndexOf(BitConverter.SingleToUInt32Bits(max));
            return best >= 0 ? best : TensorPrimitives.IndexOfMax(row);
        }

        // Division is monotone, so the largest tempered logit is the tempered largest logit.
        float zMax = Tempered(TensorPrimitives.Max(row), t);
        int fraction = SamplingRules.FractionBits(vocab);
        float scale = SamplingRules.Scale(fraction);
        ulong total;
        int token;
        bool topK = options.TopK > 0 && options.TopK < vocab, topP = options.TopP < 1f;
        if (!topK && !topP)
        {
            fixed (ulong* blocks = select.Blocks)
            {
                total = RelativeProbabilities(x, vocab, t, zMax, scale, null, blocks, null, null);
                token = DrawInIdOrder(x, vocab, t, zMax, scale, blocks, SamplingRules.ScaleUniform(total, bits53));
            }
            if (token < 0) token = TensorPrimitives.IndexOfMax(row);
        }
        else
        {
            // One pass stores e, the sample and the blocks' largest e: the head search reads the last (and e in a few
            // blocks), the bracket search for rows without a dominant head (flat ones) all three.
            fixed (float* e = select.Exps)
            fixed (float* sampled = select.SampledExps)
            fixed (float* blockMax = select.BlockMaxExps)
                total = RelativeProbabilities(x, vocab, t, zMax, scale, e, null, sampled, blockMax);
            select.BeginRow(x, vocab, t, scale, total);
            token = select.TryDrawFromHead(topK ? options.TopK : 0, options.TopP, bits53, out ulong headWeight);
            if (token >= 0)
            {
                truncated = 1.0 - (double)headWeight / total;
                return token;
            }
            var kept = topK ? select.Find(CpuSamplingSelect.Target.Count, (ulong)options.TopK, CpuSamplingSelect.Bound.None) : CpuSamplingSelect.Bound.None;
            ulong keptWeight = topK ? kept.Weight : total;
            ulong drawWeight = keptWeight;
            if (topP)
            {
                var (nucleus, drawn) = select.FindNucleusAndDraw(SamplingRules.CeilMulFraction(options.TopP, keptWeight), bits53, kept);
                token = drawn.Token;
                if (nucleus.Active) drawWeight = nucleus.Weight;
            }
            else
            {
                token = select.Find(CpuSamplingSelect.Target.WeightAbove, SamplingRules.ScaleUniform(keptWeight, bits53), kept).Token;
            }
            truncated = 1.0 - (double)drawWeight / total;
        }
        return token;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tempered(float x, float t) => t == 1f ? x : x / t;

    /// <summary>AVX-512 (F and DQ): the passes go 16 lanes at a time, twice the work per instruction of the 8-lane path.</summary>
    private static readonly bool Wide = Avx512F.IsSupported && Avx512DQ.IsSupported;

    /// <summary>
    /// e = exp(x / T - zMax) for 8 logits. Every token of a row goes through one exp (the 8- and 16-lane ones agree lane
    /// for lane), so equal logits get equal weights.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> RelativeProbability(Vector256<float> x, float t, float zMax)
    {
        var d = (t == 1f ? x : x / Vector256.Create(t)) - Vector256.Create(zMax);
        return FastMath.IsSupported ? FastMath.ExpNonPositive(d) : ExpWithoutAvx2(d);
    }

    /// <inheritdoc cref="RelativeProbability(Vector256{float}, float, float)"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> RelativeProbability(Vector512<float> x, float t, float zMax) =>
        FastMath.ExpNonPositive((t == 1f ? x : x / Vector512.Create(t)) - Vector512.Create(zMax));

    /// <summary>Machines without AVX2 and FMA: the library's exp, lane by lane (out of line: a stackalloc blocks inlining).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Vector256<float> ExpWithoutAvx2(Vector256<float> d)
    {
        Span<float> lanes = stackalloc float[8];
        d.CopyTo(lanes);
        TensorPrimitives.Exp(lanes, lanes);
        return Vector256.Create<float>(lanes);
    }

    /// <summary>
    /// Adds the weights trunc(e * scale) of 8 relative probabilities to two accumulators of 4 lanes; exact, as the scalar
    /// rule. AVX-512 converts the exactly scaled floats straight to integers (vcvttps2uqq); otherwise through doubles.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void AddWeights(Vector256<float> e, float scale, ref Vector256<ulong> low, ref Vector256<ulong> high)
    {
        if (Avx512DQ.VL.IsSupported)
        {
            var scaled = e * Vector256.Create(scale);
            low += Avx512DQ.VL.ConvertToVector256UInt64WithTruncation(scaled.GetLower());
            high += Avx512DQ.VL.ConvertToVector256UInt64WithTruncation(scaled.GetUpper());
        }
        else
        {
            var s = Vector256.Create((double)scale);
            low += Vector256.ConvertToUInt64(Vector256.WidenLower(e) * s);
            high += Vector256.ConvertToUInt64(Vector256.WidenUpper(e) * s);
        }
    }

    /// <summary>The weights of 16 relative probabilities (AVX-512 only), as two vectors of 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Weights(Vector512<float> e, float scale, out Vector512<ulong> low, out Vector512<ulong> high)
    {
        var scaled = e * Vector512.Create(scale);
        low = Avx512DQ.ConvertToVector512UInt64WithTruncation(scaled.GetLower());
        high = Avx512DQ.ConvertToVector512UInt64WithTruncation(scaled.GetUpper());
    }

    /// <summary>The logits x[start..end) (fewer than the lanes) as a vector padded with -inf, whose weight is 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Tail<TVector>(float* x, int start, int end) where TVector : unmanaged
    {
        TVector lanes = default;
        float* p = (float*)&lanes;
        for (int i = 0; i < sizeof(TVector) / sizeof(float); i++) p[i] = start + i < end ? x[start + i] : float.NegativeInfinity;
        return lanes;
    }

    /// <summary>
    /// One pass over a row: the total weight, and, when asked for, the relative probabilities e (e[vocab..padded) = 0),
    /// the weight of each block of <see cref="WalkBlock"/> tokens, e of every <see cref="CpuSamplingSelect.SampleStride"/>-th token,
    /// and the largest e of each block (its NaN lanes, never kept, left out).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static ulong RelativeProbabilities(float* x, int vocab, float t, float zMax, float scale, float* e, ulong* blocks, float* sampled,
        float* blockMax)
    {
        const int stride = CpuSamplingSelect.SampleStride;
        ulong total = 0;
        for (int start = 0; start < vocab; start += WalkBlock)
        {
            int end = Math.Min(vocab, start + WalkBlock), i = start;
            ulong block;
            if (Wide)
            {
                var low = Vector512<ulong>.Zero;
                var high = Vector512<ulong>.Zero;
                var largest = Vector512<float>.Zero;
                for (; i < end; i += 16)
                {
                    var ev = RelativeProbability(i <= end - 16 ? Vector512.Load(x + i) : Tail<Vector512<float>>(x, i, end), t, zMax);
                    if (blockMax != null) largest = Avx512F.Max(ev, largest); // maxps returns its second operand for a NaN lane, which is never kept
                    if (e != null)
                    {
                        if (i <= end - 16) ev.Store(e + i);
                        else
                            for (int j = i; j < end; j++) e[j] = ev.GetElement(j - i);
                    }
                    if (sampled != null && (i & (stride - 1)) == 0 && i <= end - 16) sampled[i / stride] = ev.ToScalar();
                    Weights(ev, scale, out var wl, out var wh);
                    low += wl;
                    high += wh;
                }
                block = Vector512.Sum(low + high);
                if (blockMax != null) blockMax[start / WalkBlock] = LargestLane(Avx.Max(largest.GetLower(), largest.GetUpper()));
            }
            else
            {
                var low = Vector256<ulong>.Zero;
                var high = Vector256<ulong>.Zero;
                var largest = Vector256<float>.Zero;
                for (; i < end; i += 8)
                {
                    var ev = RelativeProbability(i <= end - 8 ? Vector256.Load(x + i) : Tail<Vector256<float>>(x, i, end), t, zMax);
                    if (blockMax != null) largest = Avx.IsSupported ? Avx.Max(ev, largest) : Vector256.Max(ev, largest);
                    if (e != null)
                    {
                        if (i <= end - 8) ev.Store(e + i);
                        else
                            for (int j = i; j < end; j++) e[j] = ev.GetElement(j - i);
                    }
                    if (sampled != null && (i & (stride - 1)) == 0 && i <= end - 8) sampled[i / stride] = ev.ToScalar();
                    AddWeights(ev, scale, ref low, ref high);
                }
                block = Vector256.Sum(low + high);
                if (blockMax != null) blockMax[start / WalkBlock] = LargestLane(largest);
            }
            if (blocks != null) blocks[start / WalkBlock] = block;
            total += block;
        }
        if (e != null)
            for (int j = vocab; j < ((vocab + 15) & ~15); j++) e[j] = 0f;
        return total;
    }

    /// <summary>The largest of 8 non-negative, non-NaN lanes (maxps: no NaN or signed-zero handling needed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float LargestLane(Vector256<float> v)
    {
        if (!Sse.IsSupported)
        {
            float best = 0f;
            for (int i = 0; i < Vector256<float>.Count; i++) best = MathF.Max(best, v.GetElement(i));
            return best;
        }
        var m = Sse.Max(v.GetLower(), v.GetUpper());
        m = Sse.Max(m, Sse.MoveHighToLow(m, m));
        return Sse.MaxScalar(m, Sse.Shuffle(m, m, 1)).ToScalar();
    }

    /// <summary>
    /// The first id whose running weight exceeds target: skips whole blocks by their weights, then recomputes the
    /// relative probabilities of the one block it lands in. -1 if none (only for NaN logits).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int DrawInIdOrder(float* x, int vocab, float t, float zMax, float scale, ulong* blocks, ulong target)
    {
        ulong running = 0;
        int b = 0, count = (vocab + WalkBlock - 1) / WalkBlock;
        for (; b < count && running + blocks[b] <= target; b++) running += blocks[b];
        if (b == count) return -1;
        int start = b * WalkBlock, end = Math.Min(vocab, start + WalkBlock);
        float* e = stackalloc float[WalkBlock];
        RelativeProbabilities(x + start, end - start, t, zMax, scale, e, null, null, null);
        for (int j = 0; j < end - start; j++)
        {
            running += SamplingRules.Weight(e[j], scale);
            if (running > target) return start + j;
        }
        return -1;
    }
}
