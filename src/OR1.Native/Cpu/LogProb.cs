using System.Numerics.Tensors;

namespace OR1.Native.Cpu;

/// <summary>
/// Per-token log-prob of a target and full-vocabulary entropy, from hidden states and the LM-head
/// weight, without materialising [tokens x vocab] logits: logits are produced by GEMM in tiles of
/// <see cref="TokenBlock"/> rows x <see cref="VocabChunk"/> columns (a tile stays in L2) and folded into
/// running statistics (max m, s = sum e^(z-m), u = sum e^(z-m) (z-m)), from which lse = m + ln s and
/// H = ln s - u/s. Keeping u relative to m avoids the cancellation of computing lse - E[z] directly.
/// <para>
/// Work is split over vocabulary ranges (large vocabularies: each part reads its share of the weight
/// once per token block) and over token ranges (small vocabularies such as the sample's), giving
/// parts = vocabParts x tokenParts. Partial results are merged in part order: deterministic.
/// </para>
/// </summary>
internal static unsafe class CpuLogProb
{
    public const int TokenBlock = 128;
    public const int VocabChunk = 512;

    private readonly record struct Plan(int VocabParts, int TokenParts, int Rows, int Vocab, int Width)
    {
        public int Parts => VocabParts * TokenParts;
        public (int Start, int End) VocabRange(int vp) => LogProbFold.PartRange(Vocab, VocabParts, vp);
        public (int Start, int End) TokenRange(int tp) => (Split(Rows, TokenParts, tp), Split(Rows, TokenParts, tp + 1));
        private static int Split(int count, int parts, int part) => (int)((long)count * part / parts);

        /// <summary>
        /// The vocabulary parts are <see cref="LogProbFold.VocabParts"/>' (the sampler folds a row the same way); the rows
        /// are split only to give idle threads work, which changes no row's result.
        /// </summary>
        public static Plan For(int rows, int vocab, int width)
        {
            int threads = CpuParallel.ThreadCount, vocabParts = LogProbFold.VocabParts(vocab);
            // Too little work to fork over rows too.
            if ((long)rows * vocab * width < 1L << 18) return new Plan(vocabParts, 1, rows, vocab, width);
            int tokenParts = Math.Clamp(threads / vocabParts, 1, Math.Max(1, (rows + 15) / 16));
            return new Plan(vocabParts, tokenParts, rows, vocab, width);
        }
    }

    /// <summary>Every thread folds tiles of <see cref="TokenBlock"/> x <see cref="VocabChunk"/> logits (its own, reused); the
    /// running statistics take 3 floats per row and vocabulary part, plus the target logits.</summary>
    public static LogProbTiling Tiling(int rows, int vocab, int width)
    {
        var plan = Plan.For(rows, vocab, width);
        long tiles = (long)Math.Min(plan.Parts, CpuParallel.ThreadCount) * (TokenBlock * VocabChunk + VocabChunk) * sizeof(float);
        long stats = (3L * plan.VocabParts + 1) * rows * sizeof(float);
        return new LogProbTiling(rows, vocab, Math.Min(TokenBlock, Math.Max(1, rows)), Math.Min(VocabChunk, vocab), tiles + stats);
    }

    public static void Forward(float* hidden, float* weight, int* targets, float temperature,
        float* logProbs, float* entropy, float* logSumExp, int rows, int vocab, int width)
    {
        CheckTargets("LogProbForward", targets, rows, vocab);
        var plan = Plan.For(rows, vocab, width);
        float invT = 1f / temperature;
        // Running statistics per (vocab part, row); the target logit is written by the one part owning the id.
        using var stats = new ScratchFloats(3 * plan.VocabParts * rows + rows);
        float* maxes = stats.Pointer, sums = maxes + plan.VocabParts * rows, moments = sums + plan.VocabParts * rows;
        float* targetLogits = moments + plan.VocabParts * rows;
        CpuParallel.ForEach(plan.Parts, part =>
        {
            int vp = part % plan.VocabParts, tp = part / plan.VocabParts;
            var (v0, v1) = plan.VocabRange(vp);
            var (n0, n1) = plan.TokenRange(tp);
            float* m = maxes + vp * rows, s = sums + vp * rows, u = moments + vp * rows;
            for (int n = n0; n < n1; n++) { m[n] = float.NegativeInfinity; s[n] = 0; u[n] = 0; }
            var tile = TileScratch.ForThisThread();
            for (int nb = n0; nb < n1; nb += TokenBlock)
            {
                int rowsInBlock = Math.Min(TokenBlock, n1 - nb);
                for (int vc = v0; vc < v1; vc += VocabChunk)
                {
                    int cols = Math.Min(VocabChunk, v1 - vc);
                    CpuGemm.Multiply(false, true, rowsInBlock, cols, width, invT,
                        hidden + (long)nb * width, width, weight + (long)vc * width, width, 0f, tile.Logits, cols);
                    for (int r = 0; r < rowsInBlock; r++)
                    {
                        int n = nb + r;
                        var z = new Span<float>(tile.Logits + (long)r * cols, cols);
                        int target = targets[n];
                        if (target >= vc && target < vc + cols) targetLogits[n] = z[target - vc];
                        LogProbFold.Accumulate<LogProbFold.Yes>(tile.Logits + (long)r * cols, cols, 1f, ref m[n], ref s[n], ref u[n]);
                    }
                }
            }
        });
        for (int n = 0; n < rows; n++)
        {
            LogProbFold.Merge(maxes + n, sums + n, moments + n, plan.VocabParts, rows, out float lse, out float h);
            logSumExp[n] = lse;
            entropy[n] = h;
            logProbs[n] = targetLogits[n] - lse;
        }
    }

    /// <summary>
    /// dz_j = dlogp (1[j = t] - p_j) - dH p_j (z_j - lse + H), from d/dz of logp_t = z_t - lse and of
    /// H = -sum p log p; then dlogits = dz / T. Logit tiles are recomputed (cheaper than storing them).
    /// dHidden partials per vocab part and dWeight partials per token part are merged in order.
    /// </summary>
    public static void Backward(float* dLogProbs, float* dEntropy, float* hidden, float* weight, int* targets,
        float temperature, float* entropy, float* logSumExp, float* dHidden, float* dWeight, int rows, int vocab, int width)
    {
        CheckTargets("LogProbBackward", targets, rows, vocab);
        var plan = Plan.For(rows, vocab, width);
        float invT = 1f / temperature;
        long hiddenSize = (long)rows * width, weightSize = (long)vocab * width;
        // Part (vp, tp) writes dHidden rows of its token range into buffer vp and dWeight rows of its vocab
        // range into buffer tp; buffer 0 of each is the real output, the others are scratch.
        long scratchSize = (plan.VocabParts - 1) * hiddenSize + (plan.TokenParts - 1) * weightSize;
        using var scratch = new ScratchFloats(checked((int)Math.Max(1, scratchSize)));
        float* dHiddenExtra = scratch.Pointer;
        float* dWeightExtra = scratch.Pointer + (plan.VocabParts - 1) * hiddenSize;
        new Span<float>(dHidden, checked((int)hiddenSize)).Clear();
        if (scratchSize > 0) new Span<float>(scratch.Pointer, (int)scratchSize).Clear();
        CpuParallel.ForEach(plan.Parts, part =>
        {
            int vp = part % plan.VocabParts, tp = part / plan.VocabParts;
            var (v0, v1) = plan.VocabRange(vp);
            var (n0, n1) = plan.TokenRange(tp);
            float* dH = vp == 0 ? dHidden : dHiddenExtra + (vp - 1) * hiddenSize;
            float* dW = tp == 0 ? dWeight : dWeightExtra + (tp - 1) * weightSize;
            var tile = TileScratch.ForThisThread();
            for (int nb = n0; nb < n1; nb += TokenBlock)
            {
                int rowsInBlock = Math.Min(TokenBlock, n1 - nb);
                for (int vc = v0; vc < v1; vc += VocabChunk)
                {
                    int cols = Math.Min(VocabChunk, v1 - vc);
                    CpuGemm.Multiply(false, true, rowsInBlock, cols, width, invT,
                        hidden + (long)nb * width, width, weight + (long)vc * width, width, 0f, tile.Logits, cols);
                    for (int r = 0; r < rowsInBlock; r++)
                    {
                        int n = nb + r;
                        var z = new Span<float>(tile.Logits + (long)r * cols, cols);
                        float dlp = dLogProbs[n];
                        float dh = dEntropy is null ? 0f : dEntropy[n];
                        float lse = logSumExp[n];
                        // dz = -p * (dlp + dh * (z - lse + H)) = -p * (dh * z + (dlp + dh * (H - lse)))
                        var p = new Span<float>(tile.Exps, cols);
                        TensorPrimitives.Subtract(z, lse, p);
                        TensorPrimitives.Exp(p, p);
                        TensorPrimitives.Multiply(z, dh, z);
                        TensorPrimitives.Add(z, dlp + dh * (entropy[n] - lse), z);
                        TensorPrimitives.Multiply(z, p, z);
                        TensorPrimitives.Negate(z, z);
                        int target = targets[n];
                        if (target >= vc && target < vc + cols) z[target - vc] += dlp;
                    }
                    // dHidden[block] += dz · W[chunk] / T ; dW[chunk] += dz^T · hidden[block] / T
                    CpuGemm.Multiply(false, false, rowsInBlock, width, cols, invT,
                        tile.Logits, cols, weight + (long)vc * width, width, 1f, dH + (long)nb * width, width);
                    CpuGemm.Multiply(true, false, cols, width, rowsInBlock, invT,
                        tile.Logits, cols, hidden + (long)nb * width, width, 1f, dW + (long)vc * width, width);
                }
            }
        });
        for (int vp = 1; vp < plan.VocabParts; vp++)
            CpuElementwise.Add(dHidden, dHiddenExtra + (vp - 1) * hiddenSize, dHidden, hiddenSize);
        for (int tp = 1; tp < plan.TokenParts; tp++)
            CpuElementwise.Add(dWeight, dWeightExtra + (tp - 1) * weightSize, dWeight, weightSize);
    }

    private static void CheckTargets(string op, int* targets, int rows, int vocab)
    {
        for (int n = 0; n < rows; n++)
        {
            if ((uint)targets[n] >= (uint)vocab)
                throw new ArgumentException($"{op}: argument 'targets' has token {targets[n]} at row {n}, outside the vocabulary [0, {vocab})", "targets");
        }
    }

    /// <summary>Per-thread logit tile and exp row, allocated once per thread and reused.</summary>
    private sealed class TileScratch
    {
        [ThreadStatic] private static TileScratch? t_instance;
        private readonly float[] _logits = GC.AllocateArray<float>(TokenBlock * VocabChunk, pinned: true);
        private readonly float[] _exps = GC.AllocateArray<float>(VocabChunk, pinned: true);

        public float* Logits => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _logits[0]);
        public float* Exps => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _exps[0]);

        public static TileScratch ForThisThread() => t_instance ??= new TileScratch();
    }
}
