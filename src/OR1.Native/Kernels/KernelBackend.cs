namespace OR1.Native.Kernels;

/// <summary>
/// A backend whose ops run the hand-written kernels of kernels/*.cu: the Cuda backend (a GPU through the
/// driver API) and the Emu backend (the same sources compiled for the host). Every op goes through one
/// <see cref="KernelLaunchers"/> layer over the device's <see cref="IKernelRuntime"/>, so the two
/// backends differ only in memory and launch mechanics.
/// </summary>
public abstract class KernelBackend : BackendBase
{
    private readonly IKernelRuntime _runtime;
    private readonly KernelLaunchers _launch;
    private readonly bool _hostVisible;

    private protected KernelBackend(IKernelRuntime runtime, bool hostVisibleMemory)
    {
        _runtime = runtime;
        _launch = new KernelLaunchers(runtime);
        _hostVisible = hostVisibleMemory;
    }

    private protected IKernelRuntime Runtime => _runtime;

    /// <inheritdoc />
    public override IReadOnlyList<DType> StorageTypes { get; } = [DType.Float32, DType.BFloat16];

    // ---------------------------------------------------------------- memory

    /// <inheritdoc />
    protected override DeviceBuffer AllocateBuffer(long sizeInBytes) => new KernelBuffer(this, _runtime, sizeInBytes, _hostVisible);

    /// <inheritdoc />
    protected override unsafe void UploadCore(ReadOnlySpan<byte> source, Tensor destination, long byteOffset)
    {
        if (source.Length == 0) return;
        fixed (byte* s = source) _runtime.CopyHostToDevice(s, destination.DevicePointer + (nint)byteOffset, source.Length);
    }

    /// <inheritdoc />
    protected override unsafe void DownloadCore(Tensor source, Span<byte> destination, long byteOffset)
    {
        if (destination.Length == 0) return;
        fixed (byte* d = destination) _runtime.CopyDeviceToHost(source.DevicePointer + (nint)byteOffset, d, destination.Length);
    }

    /// <inheritdoc />
    public override void Synchronize() => _runtime.Synchronize();

    // ---------------------------------------------------------------- ops: the launchers do the work

    /// <inheritdoc />
    protected override void FillCore(Tensor x, float value) => _launch.Fill(x, value);
    /// <inheritdoc />
    protected override void ConvertCore(Tensor source, Tensor destination) => _launch.Convert(source, destination);
    /// <inheritdoc />
    protected override void CopyCore(Tensor source, Tensor destination) => _launch.Copy(source, destination);
    /// <inheritdoc />
    protected override void AddCore(Tensor a, Tensor b, Tensor output) => _launch.Add(a, b, output);
    /// <inheritdoc />
    protected override void ScaleCore(Tensor x, float factor) => _launch.Scale(x, factor);
    /// <inheritdoc />
    protected override void AddBiasCore(Tensor x, Tensor bias) => _launch.AddBias(x, bias);
    /// <inheritdoc />
    protected override void BiasBackwardCore(Tensor dOutput, Tensor dBias) => _launch.BiasBackward(dOutput, dBias);
    /// <inheritdoc />
    protected override void GatherRowsCore(Tensor source, Tensor rowIndices, Tensor destination) => _launch.GatherRows(source, rowIndices, destination);
    /// <inheritdoc />
    protected override void ScatterRowsCore(Tensor source, Tensor rowIndices, Tensor destination) => _launch.ScatterRows(source, rowIndices, destination);

    /// <inheritdoc />
    protected override void MatMulCore(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha, float beta, int batch, int m, int n, int k) =>
        _launch.MatMul(a, transposeA, b, transposeB, c, alpha, beta, batch, m, n, k);

    /// <inheritdoc />
    protected override void EmbeddingForwardCore(Tensor tokenIds, Tensor table, Tensor output) => _launch.EmbeddingForward(tokenIds, table, output);
    /// <inheritdoc />
    protected override void EmbeddingBackwardCore(Tensor tokenIds, Tensor dOutput, Tensor dTable) => _launch.EmbeddingBackward(tokenIds, dOutput, dTable);

    /// <inheritdoc />
    protected override void RmsNormForwardCore(Tensor x, Tensor weight, float eps, Tensor output, Tensor invRms) =>
        _launch.RmsNormForward(x, weight, eps, output, invRms);
    /// <inheritdoc />
    protected override void RmsNormBackwardCore(Tensor dOutput, Tensor x, Tensor weight, Tensor invRms, Tensor dx, Tensor dWeight) =>
        _launch.RmsNormBackward(dOutput, x, weight, invRms, dx, dWeight);

    /// <inheritdoc />
    protected override void RopeCore(Tensor input, Tensor positions, int numHeads, int headDim, float theta, Tensor output, bool inverse) =>
        _launch.Rope(input, positions, numHeads, headDim, theta, output, inverse);

    /// <inheritdoc />
    protected override void AttentionForwardCore(Tensor q, Tensor k, Tensor v, Segments sequences, AttentionHeads heads, float scale,
        Tensor output, Tensor logSumExp) => _launch.AttentionForward(q, k, v, sequences, heads, scale, output, logSumExp);
    /// <inheritdoc />
    protected override void AttentionBackwardCore(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
        Segments sequences, AttentionHeads heads, float scale, Tensor dq, Tensor dk, Tensor dv) =>
        _launch.AttentionBackward(dOutput, q, k, v, output, logSumExp, sequences, heads, scale, dq, dk, dv);
    /// <inheritdoc />
    protected override void AttentionDecodeCore(Tensor q, Tensor keyCache, Tensor valueCache, Tensor cacheSlots, Tensor lengths,
        AttentionHeads heads, float scale, Tensor output) =>
        _launch.AttentionDecode(q, keyCache, valueCache, cacheSlots, lengths, heads, scale, output);

    /// <inheritdoc />
    protected override void SwiGluForwardCore(Tensor gate, Tensor up, Tensor output) => _launch.SwiGluForward(gate, up, output);
    /// <inheritdoc />
    protected override void SwiGluBackwardCore(Tensor dOutput, Tensor gate, Tensor up, Tensor dGate, Tensor dUp) =>
        _launch.SwiGluBackward(dOutput, gate, up, dGate, dUp);

    /// <inheritdoc />
    protected override void LogProbForwardCore(Tensor hidden, Tensor weight, Tensor targets, float temperature,
        Tensor logProbs, Tensor entropy, Tensor logSumExp) =>
        _launch.LogProbForward(hidden, weight, targets, temperature, logProbs, entropy, logSumExp);
    /// <inheritdoc />
    protected override void LogProbBackwardCore(Tensor dLogProbs, Tensor? dEntropy, Tensor hidden, Tensor weight, Tensor targets,
        float temperature, Tensor entropy, Tensor logSumExp, Tensor dHidden, Tensor dWeight) =>
        _launch.LogProbBackward(dLogProbs, dEntropy, hidden, weight, targets, temperature, entropy, logSumExp, dHidden, dWeight);

    /// <inheritdoc />
    protected override void GrpoAdvantagesCore(Tensor rewards, Segments groups, float epsilon, Tensor advantages) =>
        _launch.GrpoAdvantages(rewards, groups, epsilon, advantages);
    /// <inheritdoc />
    protected override void BroadcastSegmentsCore(Tensor values, Segments segments, Tensor output) =>
        _launch.BroadcastSegments(values, segments, output);
    /// <inheritdoc />
    protected override void PolicyLossForwardCore(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor entropy,
        Tensor tokenWeights, Tensor? referenceLogProbs, PolicyLossOptions options, Tensor lossTerms) =>
        _launch.PolicyLossForward(logProbs, oldLogProbs, advantages, entropy, tokenWeights, referenceLogProbs, options, lossTerms);
    /// <inheritdoc />
    protected override void PolicyLossBackwardCore(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor tokenWeights,
        Tensor? referenceLogProbs, PolicyLossOptions options, Tensor dLogProbs, Tensor dEntropy) =>
        _launch.PolicyLossBackward(logProbs, oldLogProbs, advantages, tokenWeights, referenceLogProbs, options, dLogProbs, dEntropy);

    /// <inheritdoc />
    protected override void AdamWStepCore(IReadOnlyList<AdamWSlot> slots, AdamWOptions options, int step, float gradientScale) =>
        _launch.AdamWStep(slots, options, step, gradientScale);
    /// <inheritdoc />
    protected override float GlobalNormCore(IReadOnlyList<Tensor> tensors) => _launch.GlobalNorm(tensors);

    /// <inheritdoc />
    protected override void SampleCore(Tensor logits, SamplingOptions options, ulong seed, ulong counter, Tensor tokens, Tensor logProbs) =>
        _launch.Sample(logits, options, seed, counter, tokens, logProbs);

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _launch.Dispose();
            _runtime.Dispose();
        }
    }

    /// <summary>Memory of a kernel runtime; host-visible on the emulator, device memory on a GPU.</summary>
    private sealed class KernelBuffer : DeviceBuffer
    {
        private readonly IKernelRuntime _runtime;
        private readonly bool _hostVisible;
        private nint _pointer;

        public KernelBuffer(IBackend backend, IKernelRuntime runtime, long sizeInBytes, bool hostVisible) : base(backend, sizeInBytes)
        {
            _runtime = runtime;
            _hostVisible = hostVisible;
            // One extra 64 bytes, like CpuBuffer: zero-byte buffers stay valid pointers.
            _pointer = runtime.Allocate(sizeInBytes + 64);
        }

        public override nint HostPointer => _hostVisible ? _pointer : 0;

        public override nint DevicePointer => _pointer;

        protected override void Release()
        {
            if (_pointer != 0) _runtime.Free(_pointer);
            _pointer = 0;
        }

        // Host memory (Emu) is freed even when a tensor was never disposed; device memory is released
        // with its context instead (freeing it from the finalizer thread would race the context's end).
        ~KernelBuffer()
        {
            if (_hostVisible && _pointer != 0) _runtime.Free(_pointer);
        }
    }
}
