using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

/// <summary>
/// The managed CPU implementation of the op contract: System.Numerics.Tensors and Vector256/FMA SIMD,
/// multi-threaded over one shared fork-join pool. It is the fast path of the bundled sample and, with
/// the double-precision references of the tests, the oracle the other backends are compared to.
/// Ops run synchronously, so <see cref="Synchronize"/> has nothing to wait for.
/// </summary>
public sealed unsafe class CpuBackend : BackendBase
{
    private readonly Dictionary<(float Theta, int HeadDim), RopeTable> _ropeTables = new();

    /// <summary>Creates the backend; <paramref name="threads"/> (default: all cores) sets the kernel pool size.</summary>
    public CpuBackend(int? threads = null)
    {
        if (threads is { } t) CpuParallel.SetThreadCount(t);
    }

    /// <inheritdoc />
    public override BackendKind Kind => BackendKind.Cpu;

    /// <inheritdoc />
    public override string Description =>
        $"Cpu ({CpuParallel.ThreadCount} threads, {(Avx512F.IsSupported ? "AVX-512" : Avx2.IsSupported ? "AVX2" : "SSE")}{(Fma.IsSupported ? "+FMA" : "")})";

    /// <inheritdoc />
    public override BackendFacts Facts() => new(Kind, Description, StorageTypes,
        "managed C# (System.Numerics.Tensors, Vector256 and FMA; GEMM micro-kernel " + CpuGemm.ActiveKernel switch
        {
            CpuGemm.Kernel.Avx512 => "12x32 AVX-512)",
            CpuGemm.Kernel.Fma256 => "6x16 AVX2+FMA)",
            _ => "4x8 Vector128)",
        },
        Host: HostFacts.ForThisCpu(ThreadCount));

    /// <summary>Threads the kernels use.</summary>
    public int ThreadCount => CpuParallel.ThreadCount;

    private static float* F(Tensor t) => (float*)t.DevicePointer;
    private static int* I(Tensor t) => (int*)t.DevicePointer;
    private static byte* B(Tensor t) => (byte*)t.DevicePointer;

    // ---------------------------------------------------------------- memory

    /// <inheritdoc />
    protected override DeviceBuffer AllocateBuffer(long sizeInBytes) => new CpuBuffer(this, sizeInBytes);

    /// <inheritdoc />
    protected override void UploadCore(ReadOnlySpan<byte> source, Tensor destination, long byteOffset) =>
        source.CopyTo(new Span<byte>(B(destination) + byteOffset, source.Length));

    /// <inheritdoc />
    protected override void DownloadCore(Tensor source, Span<byte> destination, long byteOffset) =>
        new ReadOnlySpan<byte>(B(source) + byteOffset, destination.Length).CopyTo(destination);

    /// <inheritdoc />
    public override void Synchronize() { }

    // ---------------------------------------------------------------- elementwise

    /// <inheritdoc />
    protected override void FillCore(Tensor x, float value) => CpuElementwise.Fill(F(x), x.ElementCount, value);

    /// <inheritdoc />
    protected override void CopyCore(Tensor source, Tensor destination) => CpuElementwise.Copy(B(source), B(destination), source.SizeInBytes);

    /// <inheritdoc />
    protected override void AddCore(Tensor a, Tensor b, Tensor output) => CpuElementwise.Add(F(a), F(b), F(output), a.ElementCount);

    /// <inheritdoc />
    protected override void ScaleCore(Tensor x, float factor) => CpuElementwise.Scale(F(x), x.ElementCount, factor);

    /// <inheritdoc />
    protected override void AddBiasCore(Tensor x, Tensor bias) => CpuElementwise.AddBias(F(x), F(bias), x.Shape[0], x.Shape[1]);

    /// <inheritdoc />
    protected override void BiasBackwardCore(Tensor dOutput, Tensor dBias) =>
        CpuElementwise.BiasBackward(F(dOutput), F(dBias), dOutput.Shape[0], dOutput.Shape[1]);

    /// <inheritdoc />
    protected override void GatherRowsCore(Tensor source, Tensor rowIndices, Tensor destination) =>
        CpuElementwise.GatherRows(B(source), source.Shape[0], I(rowIndices), B(destination), rowIndices.Shape[0],
            checked((int)(source.RowLength * source.DType.SizeOf())), nameof(GatherRows));

    /// <inheritdoc />
    protected override void ScatterRowsCore(Tensor source, Tensor rowIndices, Tensor destination) =>
        CpuElementwise.ScatterRows(B(source), I(rowIndices), rowIndices.Shape[0], B(destination), destination.Shape[0],
            checked((int)(source.RowLength * source.DType.SizeOf())), nameof(ScatterRows));

    /// <inheritdoc />
    public override KeyCacheLayout KeyCacheLayout => KeyCacheLayout.PageTransposed;

    /// <inheritdoc />
    protected override void WriteKeyCacheCore(Tensor keys, Tensor cacheRows, Tensor keyCache) =>
        CpuAttention.WriteKeys(F(keys), I(cacheRows), cacheRows.Shape[0], F(keyCache), keyCache.Shape[0], keyCache.Shape[1], keyCache.Shape[2],
            nameof(WriteKeyCache));

    // ---------------------------------------------------------------- GEMM

    /// <inheritdoc />
    protected override void MatMulCore(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c,
        float alpha, float beta, int batch, int m, int n, int k)
    {
        int lda = a.Shape[-1], ldb = b.Shape[-1], ldc = c.Shape[-1];
        long strideA = (long)a.Shape[-2] * lda, strideB = (long)b.Shape[-2] * ldb, strideC = (long)m * ldc;
        var packed = batch == 1 && _frozen.Count > 0 ? _frozen.GetValueOrDefault((nint)F(b)) : null;
        for (int i = 0; i < batch; i++)
            CpuGemm.Multiply(transposeA, transposeB, m, n, k, alpha, F(a) + i * strideA, lda, F(b) + i * strideB, ldb, beta, F(c) + i * strideC, ldc, packed);
    }

    /// <summary>Packed copies of frozen weights, by the address of their data (<see cref="FreezeWeights"/>).</summary>
    private readonly Dictionary<nint, CpuGemm.PackedOperand> _frozen = [];

    /// <inheritdoc />
    public override IDisposable FreezeWeights(IReadOnlyList<Tensor> weights, long maxBytes = 1L << 31)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var packed = new List<CpuGemm.PackedOperand>();
        long bytes = 0;
        foreach (var w in weights)
        {
            if (w.Rank != 2 || w.DType != DType.Float32 || _frozen.ContainsKey((nint)F(w))) continue;
            int n = w.Shape[0], k = w.Shape[1];
            long size = CpuGemm.PackedOperand.BytesFor(n, k);
            if (bytes + size > maxBytes) continue; // within the budget only; the rest packs per call as before
            bytes += size;
            var p = CpuGemm.PackedOperand.Pack(true, n, k, F(w), k);
            _frozen[(nint)F(w)] = p;
            packed.Add(p);
        }
        return new FrozenWeights(this, packed);
    }

    private sealed class FrozenWeights(CpuBackend backend, List<CpuGemm.PackedOperand> packed) : IDisposable
    {
        public void Dispose()
        {
            foreach (var p in packed)
            {
                backend._frozen.Remove((nint)p.Source);
                p.Dispose();
            }
            packed.Clear();
        }
    }

    // ---------------------------------------------------------------- embedding, norms, rope, swiglu

    /// <inheritdoc />
    protected override void EmbeddingForwardCore(Tensor tokenIds, Tensor table, Tensor output) =>
        CpuEmbedding.Forward(I(tokenIds), F(table), F(output), tokenIds.Shape[0], table.Shape[0], table.Shape[1]);

    /// <inheritdoc />
    protected override void EmbeddingBackwardCore(Tensor tokenIds, Tensor dOutput, Tensor dTable) =>
        CpuEmbedding.Backward(I(tokenIds), F(dOutput), F(dTable), tokenIds.Shape[0], dTable.Shape[0], dTable.Shape[1]);

    /// <inheritdoc />
    protected override void RmsNormForwardCore(Tensor x, Tensor weight, float eps, Tensor output, Tensor invRms) =>
        CpuRmsNorm.Forward(F(x), F(weight), eps, F(output), F(invRms), x.Shape[0], x.Shape[1]);

    /// <inheritdoc />
    protected override void RmsNormBackwardCore(Tensor dOutput, Tensor x, Tensor weight, Tensor invRms, Tensor dx, Tensor dWeight) =>
        CpuRmsNorm.Backward(F(dOutput), F(x), F(weight), F(invRms), F(dx), F(dWeight), x.Shape[0], x.Shape[1]);

    /// <inheritdoc />
    protected override void RopeCore(Tensor input, Tensor positions, int numHeads, int headDim, float theta, Tensor output, bool inverse)
    {
        RopeTable table;
        lock (_ropeTables)
        {
            if (!_ropeTables.TryGetValue((theta, headDim), out table!))
                _ropeTables[(theta, headDim)] = table = new RopeTable(theta, headDim);
        }
        CpuRope.Apply(F(input), I(positions), input.Shape[0], numHeads, headDim, F(output), table, inverse);
    }

    /// <inheritdoc />
    protected override void SwiGluForwardCore(Tensor gate, Tensor up, Tensor output) =>
        CpuSwiGlu.Forward(F(gate), F(up), F(output), gate.ElementCount);

    /// <inheritdoc />
    protected override void SwiGluBackwardCore(Tensor dOutput, Tensor gate, Tensor up, Tensor dGate, Tensor dUp) =>
        CpuSwiGlu.Backward(F(dOutput), F(gate), F(up), F(dGate), F(dUp), gate.ElementCount);

    // ---------------------------------------------------------------- attention

    /// <inheritdoc />
    protected override void AttentionForwardCore(Tensor q, Tensor k, Tensor v, Segments sequences, AttentionHeads heads, float scale,
        Tensor output, Tensor logSumExp) =>
        CpuAttention.Forward(F(q), F(k), F(v), sequences.OffsetArray, heads.NumHeads, heads.NumKvHeads, heads.HeadDim, scale, F(output), F(logSumExp));

    /// <inheritdoc />
    protected override void AttentionBackwardCore(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
        Segments sequences, AttentionHeads heads, float scale, Tensor dq, Tensor dk, Tensor dv) =>
        CpuAttention.Backward(F(dOutput), F(q), F(k), F(v), F(output), F(logSumExp), sequences.OffsetArray,
            heads.NumHeads, heads.NumKvHeads, heads.HeadDim, scale, F(dq), F(dk), F(dv));

    /// <inheritdoc />
    protected override void AttentionDecodeCore(Tensor q, Tensor keyCache, Tensor valueCache, Tensor pageTable, Tensor lengths,
        AttentionHeads heads, float scale, Tensor output) =>
        CpuAttention.Decode(F(q), F(keyCache), F(valueCache), keyCache.Shape[0], keyCache.Shape[1], I(pageTable), pageTable.Shape[1], I(lengths),
            q.Shape[0], heads.NumHeads, heads.NumKvHeads, heads.HeadDim, scale, F(output));

    // ---------------------------------------------------------------- log-prob

    /// <inheritdoc />
    public override LogProbTiling PlanLogProb(int rows, int vocab, int width, DType storage) => CpuLogProb.Tiling(rows, vocab, width);

    /// <inheritdoc />
    protected override void LogProbForwardCore(Tensor hidden, Tensor weight, Tensor targets, float temperature,
        Tensor logProbs, Tensor entropy, Tensor logSumExp) =>
        CpuLogProb.Forward(F(hidden), F(weight), I(targets), temperature, F(logProbs), F(entropy), F(logSumExp),
            hidden.Shape[0], weight.Shape[0], hidden.Shape[1]);

    /// <inheritdoc />
    protected override void LogProbBackwardCore(Tensor dLogProbs, Tensor? dEntropy, Tensor hidden, Tensor weight, Tensor targets,
        float temperature, Tensor entropy, Tensor logSumExp, Tensor dHidden, Tensor dWeight) =>
        CpuLogProb.Backward(F(dLogProbs), dEntropy is null ? null : F(dEntropy), F(hidden), F(weight), I(targets), temperature,
            F(entropy), F(logSumExp), F(dHidden), F(dWeight), hidden.Shape[0], weight.Shape[0], hidden.Shape[1]);

    // ---------------------------------------------------------------- GRPO

    /// <inheritdoc />
    protected override void GrpoAdvantagesCore(Tensor rewards, Segments groups, float epsilon, Tensor advantages) =>
        CpuGrpo.Advantages(F(rewards), groups.OffsetArray, epsilon, F(advantages));

    /// <inheritdoc />
    protected override void BroadcastSegmentsCore(Tensor values, Segments segments, Tensor output) =>
        CpuGrpo.BroadcastSegments(F(values), segments.OffsetArray, F(output));

    /// <inheritdoc />
    protected override void PolicyLossForwardCore(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor entropy,
        Tensor tokenWeights, Tensor? referenceLogProbs, PolicyLossOptions options, Tensor lossTerms) =>
        CpuGrpo.PolicyLossForward(F(logProbs), F(oldLogProbs), F(advantages), F(entropy), F(tokenWeights),
            referenceLogProbs is null ? null : F(referenceLogProbs), options, logProbs.Shape[0], F(lossTerms));

    /// <inheritdoc />
    protected override void PolicyLossBackwardCore(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor tokenWeights,
        Tensor? referenceLogProbs, PolicyLossOptions options, Tensor dLogProbs, Tensor dEntropy) =>
        CpuGrpo.PolicyLossBackward(F(logProbs), F(oldLogProbs), F(advantages), F(tokenWeights),
            referenceLogProbs is null ? null : F(referenceLogProbs), options, logProbs.Shape[0], F(dLogProbs), F(dEntropy));

    // ---------------------------------------------------------------- optimizer

    /// <inheritdoc />
    protected override void AdamWStepCore(IReadOnlyList<AdamWSlot> slots, AdamWOptions options, int step, float gradientScale)
    {
        foreach (var slot in slots)
            CpuAdamW.Step(F(slot.Parameter), F(slot.Gradient), F(slot.FirstMoment), F(slot.SecondMoment), slot.Parameter.ElementCount,
                options, slot.ApplyWeightDecay, step, gradientScale);
    }

    /// <inheritdoc />
    protected override float GlobalNormCore(IReadOnlyList<Tensor> tensors)
    {
        double total = 0;
        foreach (var t in tensors) total += CpuReduce.SumOfSquares(F(t), t.ElementCount);
        return (float)Math.Sqrt(total);
    }

    // ---------------------------------------------------------------- sampling

    /// <inheritdoc />
    protected override void SampleCore(Tensor logits, SamplingOptions options, ulong seed, ulong counter, Tensor? streams, Tensor tokens, Tensor logProbs,
        Tensor? truncatedMass) =>
        CpuSampling.Sample(F(logits), logits.Shape[0], logits.Shape[1], options, seed, counter, streams is null ? null : I(streams), I(tokens), F(logProbs),
            truncatedMass is null ? null : F(truncatedMass));

    /// <inheritdoc />
    protected override void AdvanceDecodeCore(Tensor sampled, Tensor? stopTokens, Tensor remaining, Tensor emitted, DecodeInputs? next)
    {
        int rows = sampled.Shape[0];
        var stop = stopTokens is null ? ReadOnlySpan<int>.Empty : Ints(stopTokens);
        if (next is not { } n)
        {
            CpuDecodeAdvance.Advance(Ints(sampled), stop, Ints(remaining), Ints(emitted), default, default, default, default, default, default, 0, 1, 0, advanceInputs: false);
            return;
        }
        int width = n.PageTable.Shape[1];
        // Checked before anything moves, so a refused call leaves every row as it was.
        var (row, position) = CpuDecodeAdvance.FindMissingPage(Ints(sampled), stop, Ints(remaining), Ints(n.Positions), Ints(n.PageTable), width, n.PageSize);
        if (row >= 0) throw new ArgumentException(CpuDecodeAdvance.MissingPageMessage(row, position, width), "next");
        CpuDecodeAdvance.Advance(Ints(sampled), stop, Ints(remaining), Ints(emitted), Ints(n.Tokens), Ints(n.Positions), Ints(n.Lengths), Ints(n.Streams),
            Ints(n.CacheRows), Ints(n.PageTable), width, n.PageSize, n.SinkRow, advanceInputs: true);
    }

    private static Span<int> Ints(Tensor t) => new(I(t), checked((int)t.ElementCount));
}
