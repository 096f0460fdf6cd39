using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Per-token log-prob of a target and full-vocabulary entropy from hidden states and the LM-head weight,
/// in vocabulary chunks so that [tokens x vocab] logits never exist whole: a chunk of logits
/// Z = hidden · W[chunk]^T / T is produced by the tiled GEMM into a bounded scratch, then folded into
/// running per-row statistics (max m, s = Σ e^(z-m), u = Σ e^(z-m)(z-m)), from which lse = m + ln s and
/// H = ln s - u/s (keeping u relative to m avoids the cancellation of lse - E[z]).
/// The backward recomputes each chunk's logits, turns them into dz in place
/// (dz_j = dlogp (1[j = t] - p_j) - dH p_j (z_j - lse + H)), and two GEMMs add dz · W[chunk] / T into
/// dHidden and dz^T · hidden / T into dWeight[chunk]. All reductions have a fixed order: deterministic.
/// </summary>
internal static class IlgpuLogProb
{
    /// <summary>Per-row state of the forward: m, s, u and the target logit, [4, rows].</summary>
    public const int StateFields = 4;

    /// <summary>One group per row (grid-stride): fold columns [0, cols) of the chunk into the row's running statistics.</summary>
    [IlgpuKernel]
    public static void FoldChunkKernel(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> state,
        int rows, int cols, int chunkStart, int first)
    {
        var ms = SharedMemory.Allocate<float>(32);
        var ss = SharedMemory.Allocate<float>(32);
        var us = SharedMemory.Allocate<float>(32);
        for (int n = Grid.IdxX; n < rows; n += Grid.DimX)
        {
            long row = (long)n * cols;
            float m = float.NegativeInfinity, s = 0f, u = 0f;
            for (int j = Group.IdxX; j < cols; j += Group.DimX) Collectives.AddToSoftmaxStats(ref m, ref s, ref u, logits[row + j]);
            Collectives.WarpMergeSoftmaxStats(ref m, ref s, ref u);
            if (Warp.LaneIdx == 0)
            {
                ms[Warp.WarpIdx] = m;
                ss[Warp.WarpIdx] = s;
                us[Warp.WarpIdx] = u;
            }
            Group.Barrier();
            if (Group.IdxX == 0)
            {
                float rm = float.NegativeInfinity, rs = 0f, ru = 0f;
                if (first == 0)
                {
                    rm = state[n];
                    rs = state[rows + n];
                    ru = state[2 * rows + n];
                }
                int warps = Collectives.WarpsPerGroup;
                for (int w = 0; w < warps; w++) Collectives.MergeSoftmaxStats(ref rm, ref rs, ref ru, ms[w], ss[w], us[w]);
                state[n] = rm;
                state[rows + n] = rs;
                state[2 * rows + n] = ru;
                int target = targets[n] - chunkStart;
                if (target >= 0 && target < cols) state[3 * rows + n] = logits[row + target];
            }
            Group.Barrier();
        }
    }

    [IlgpuKernel]
    public static void FinishKernel(ArrayView<float> state, ArrayView<float> logProbs, ArrayView<float> entropy, ArrayView<float> logSumExp, int rows)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long n = Grid.GlobalIndex.X; n < rows; n += stride)
        {
            float m = state[n], s = state[rows + n], u = state[2 * rows + n];
            float logS = MathF.Log(s);
            float lse = m + logS;
            logSumExp[n] = lse;
            entropy[n] = logS - u / s;
            logProbs[n] = state[3 * rows + n] - lse;
        }
    }

    /// <summary>
    /// In place over a chunk [rows, cols]: z becomes dz = -p (dh z + (dlp + dh (H - lse))) + dlp 1[j = t],
    /// p = e^(z - lse). A flat grid-stride loop: every element is independent.
    /// </summary>
    [IlgpuKernel]
    public static void ChunkGradientKernel(ArrayView<float> logits, ArrayView<float> dLogProbs, ArrayView<float> dEntropy, ArrayView<int> targets,
        ArrayView<float> entropy, ArrayView<float> logSumExp, int rows, int cols, int chunkStart, int hasEntropyGradient)
    {
        long total = (long)rows * cols, stride = (long)Grid.DimX * Group.DimX;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            int n = (int)(e / cols), j = (int)(e - (long)n * cols);
            float z = logits[e], lse = logSumExp[n], dlp = dLogProbs[n];
            float dh = hasEntropyGradient != 0 ? dEntropy[n] : 0f;
            float p = MathF.Exp(z - lse);
            float dz = -(p * (dh * z + (dlp + dh * (entropy[n] - lse))));
            if (targets[n] == chunkStart + j) dz += dlp;
            logits[e] = dz;
        }
    }

    // ---------------------------------------------------------------- host side

    /// <summary>Columns per chunk so that a chunk of logits fits the scratch budget (a multiple of the GEMM tile).</summary>
    public static int ChunkColumns(IlgpuDevice device, int rows, int vocab)
    {
        int tile = 4 * device.Profile.GemmThreadsPerSide;
        long budget = Math.Max(tile, device.Profile.ScratchFloats / Math.Max(1, rows));
        long cols = Math.Min(vocab, Math.Max(tile, budget - budget % tile));
        return (int)cols;
    }

    public static void Forward(IlgpuDevice device, ArrayView<float> hidden, ArrayView<float> weight, ArrayView<int> targets, float temperature,
        ArrayView<float> logProbs, ArrayView<float> entropy, ArrayView<float> logSumExp, ArrayView<float> logitScratch, ArrayView<float> state,
        int rows, int vocab, int width, int chunk)
    {
        if (rows == 0) return;
        var p = device.Profile;
        var fold = device.Load<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int, int>(FoldChunkKernel);
        for (int v0 = 0; v0 < vocab; v0 += chunk)
        {
            int cols = Math.Min(chunk, vocab - v0);
            var z = logitScratch.SubView(0, (long)rows * cols);
            IlgpuGemm.Multiply(device, hidden, false, weight.SubView((long)v0 * width, (long)cols * width), true, z,
                1, rows, cols, width, width, width, cols, 0, 0, 0, 1f / temperature, 0f);
            fold(new KernelConfig(p.Groups(rows), p.BlockThreads), z, targets, state, rows, cols, v0, v0 == 0 ? 1 : 0);
        }
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(FinishKernel)(
            new KernelConfig(p.Groups(rows, p.BlockThreads), p.BlockThreads), state, logProbs, entropy, logSumExp, rows);
    }

    public static void Backward(IlgpuDevice device, ArrayView<float> dLogProbs, ArrayView<float> dEntropy, bool hasEntropyGradient,
        ArrayView<float> hidden, ArrayView<float> weight, ArrayView<int> targets, float temperature, ArrayView<float> entropy,
        ArrayView<float> logSumExp, ArrayView<float> dHidden, ArrayView<float> dWeight, ArrayView<float> logitScratch,
        int rows, int vocab, int width, int chunk)
    {
        if (rows == 0) return;
        var p = device.Profile;
        float invT = 1f / temperature;
        var gradient = device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
            int, int, int, int>(ChunkGradientKernel);
        for (int v0 = 0; v0 < vocab; v0 += chunk)
        {
            int cols = Math.Min(chunk, vocab - v0);
            var z = logitScratch.SubView(0, (long)rows * cols);
            var w = weight.SubView((long)v0 * width, (long)cols * width);
            IlgpuGemm.Multiply(device, hidden, false, w, true, z, 1, rows, cols, width, width, width, cols, 0, 0, 0, invT, 0f);
            gradient(new KernelConfig(p.Groups((long)rows * cols, p.BlockThreads), p.BlockThreads), z, dLogProbs, dEntropy, targets,
                entropy, logSumExp, rows, cols, v0, hasEntropyGradient ? 1 : 0);
            // dHidden (=, then +=) dz · W[chunk] / T ; dW[chunk] += dz^T · hidden / T
            IlgpuGemm.Multiply(device, z, false, w, false, dHidden, 1, rows, width, cols, cols, width, width, 0, 0, 0, invT, v0 == 0 ? 0f : 1f);
            IlgpuGemm.Multiply(device, z, true, hidden, false, dWeight.SubView((long)v0 * width, (long)cols * width),
                1, cols, width, rows, cols, width, width, 0, 0, 0, invT, 1f);
        }
    }
}
