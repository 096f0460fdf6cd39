namespace OR1.Native.Kernels;

/// <summary>
/// A backend whose ops run the hand-written kernels of kernels/*.cu: the Cuda backend (a GPU through the
/// driver API) and the Emu backend (the same sources compiled for the host). Every op goes through one
/// <see cref="KernelLaunchers"/> layer over the device's <see cref="IKernelRuntime"/>, so the two
/// backends differ only in memory and launch mechanics.
/// </summary>
public abstract class KernelBackend : BackendBase
{
    private readonly InstrumentedRuntime _runtime;
    private readonly KernelLaunchers _launch;
    private readonly bool _hostVisible;

    private protected KernelBackend(IKernelRuntime runtime, bool hostVisibleMemory)
    {
        _runtime = new InstrumentedRuntime(runtime, DebugSyncRequested());
        _launch = new KernelLaunchers(_runtime);
        _hostVisible = hostVisibleMemory;
    }

    /// <summary>The device runtime (CudaRuntime or EmuRuntime) under the instrumentation.</summary>
    private protected IKernelRuntime Runtime => _runtime.Device;

    /// <inheritdoc />
    public override long? FreeMemoryBytes => Runtime.FreeMemoryBytes;

    /// <summary>
    /// The same device runtime, for launching kernels that no op launches (the probes of kernels/tensorcore_check.cu)
    /// from the tests: raw launches, allocations and copies, bypassing the op layer and its counters.
    /// </summary>
    internal IKernelRuntime DeviceRuntime => _runtime.Device;

    /// <summary>The environment switch of debug sync: OR1_DEBUG_SYNC=1 (as CUDA_LAUNCH_BLOCKING=1 is CUDA's).</summary>
    public static bool DebugSyncRequested() => Environment.GetEnvironmentVariable("OR1_DEBUG_SYNC") is "1" or "true";

    /// <summary>
    /// Debug sync: wait for the device after every launch and check the device's error record, so that a failing
    /// kernel or a bad index is reported by the op that caused it. Slow; for finding a fault, not for running.
    /// Starts on when OR1_DEBUG_SYNC=1 (the CLI's --debug-sync sets it).
    /// </summary>
    public bool DebugSync
    {
        get => _runtime.DebugSync;
        set => _runtime.DebugSync = value;
    }

    /// <summary>What this backend has asked of its device so far (launches, synchronisations, allocations, copies).</summary>
    public DeviceCounters Counters => _runtime.Counters;

    /// <summary>Device memory this backend holds now (tensors, arenas, scratch) and its peak since <see cref="ResetPeakDeviceBytes"/>.</summary>
    public (long InUse, long Peak) DeviceBytes => _runtime.DeviceBytes;

    /// <summary>Starts a new peak of <see cref="DeviceBytes"/> at what is in use now.</summary>
    public void ResetPeakDeviceBytes() => _runtime.ResetPeakDeviceBytes();

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

    /// <inheritdoc />
    public override IDeviceGraph? CaptureGraph(Action work)
    {
        ArgumentNullException.ThrowIfNull(work);
        _ = _runtime.Errors.Record; // the device error record is allocated before: a capture cannot allocate
        long epoch = _launch.ScratchEpoch;
        _runtime.BeginCapture();
        try
        {
            work();
        }
        catch
        {
            // End the broken capture so the stream works again; what it recorded is dropped.
            try { _runtime.EndCapture().Dispose(); } catch (KernelException) { } catch (Cuda.CudaException) { }
            throw;
        }
        return new KernelGraph(this, _runtime.EndCapture(), epoch);
    }

    /// <summary>
    /// A graph of this backend: it replays only while the launchers' scratch buffers are where the capture found them
    /// (a later, larger op may move one), and each replay tells the error record that its checks may have reported.
    /// </summary>
    private sealed class KernelGraph(KernelBackend backend, IDeviceGraph graph, long epoch) : IDeviceGraph
    {
        public int Nodes => graph.Nodes;

        public bool IsCurrent => backend._launch.ScratchEpoch == epoch;

        public void Replay()
        {
            if (!IsCurrent)
                throw new InvalidOperationException("a scratch buffer that this graph uses was reallocated since its capture (a larger op ran): capture it again");
            backend._runtime.Errors.NoteReplay();
            graph.Replay();
        }

        public void Dispose() => graph.Dispose();
    }

    // ---------------------------------------------------------------- ops: the launchers do the work

    /// <summary>The launchers, noting <paramref name="op"/> as the op issuing work (named when a later wait finds a fault).</summary>
    private KernelLaunchers Op(string op)
    {
        _runtime.LastOp = op;
        return _launch;
    }

    /// <inheritdoc />
    protected override void FillCore(Tensor x, float value) => Op("Fill").Fill(x, value);
    /// <inheritdoc />
    protected override void ConvertCore(Tensor source, Tensor destination) => Op("Convert").Convert(source, destination);
    /// <inheritdoc />
    protected override void CopyCore(Tensor source, Tensor destination) => Op("Copy").Copy(source, destination);
    /// <inheritdoc />
    protected override void AddCore(Tensor a, Tensor b, Tensor output) => Op("Add").Add(a, b, output);
    /// <inheritdoc />
    protected override void ScaleCore(Tensor x, float factor) => Op("Scale").Scale(x, factor);
    /// <inheritdoc />
    protected override void AddBiasCore(Tensor x, Tensor bias) => Op("AddBias").AddBias(x, bias);
    /// <inheritdoc />
    protected override void BiasBackwardCore(Tensor dOutput, Tensor dBias) => Op("BiasBackward").BiasBackward(dOutput, dBias);
    /// <inheritdoc />
    protected override void GatherRowsCore(Tensor source, Tensor rowIndices, Tensor destination) => Op("GatherRows").GatherRows(source, rowIndices, destination);
    /// <inheritdoc />
    protected override void ScatterRowsCore(Tensor source, Tensor rowIndices, Tensor destination) => Op("ScatterRows").ScatterRows(source, rowIndices, destination);

    /// <inheritdoc />
    protected override void WriteKeyCacheCore(Tensor keys, Tensor cacheRows, Tensor keyCache) =>
        Op("WriteKeyCache").WriteKeyCache(keys, cacheRows, keyCache);

    /// <inheritdoc />
    protected override void MatMulCore(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha, float beta, int batch, int m, int n, int k) =>
        Op("MatMul").MatMul(a, transposeA, b, transposeB, c, alpha, beta, batch, m, n, k);

    /// <inheritdoc />
    protected override void EmbeddingForwardCore(Tensor tokenIds, Tensor table, Tensor output) => Op("EmbeddingForward").EmbeddingForward(tokenIds, table, output);
    /// <inheritdoc />
    protected override void EmbeddingBackwardCore(Tensor tokenIds, Tensor dOutput, Tensor dTable) => Op("EmbeddingBackward").EmbeddingBackward(tokenIds, dOutput, dTable);

    /// <inheritdoc />
    protected override void RmsNormForwardCore(Tensor x, Tensor weight, float eps, Tensor output, Tensor invRms) =>
        Op("RmsNormForward").RmsNormForward(x, weight, eps, output, invRms);
    /// <inheritdoc />
    protected override void RmsNormBackwardCore(Tensor dOutput, Tensor x, Tensor weight, Tensor invRms, Tensor dx, Tensor dWeight) =>
        Op("RmsNormBackward").RmsNormBackward(dOutput, x, weight, invRms, dx, dWeight);

    /// <inheritdoc />
    protected override void RopeCore(Tensor input, Tensor positions, int numHeads, int headDim, float theta, Tensor output, bool inverse) =>
        Op("Rope").Rope(input, positions, numHeads, headDim, theta, output, inverse);

    /// <inheritdoc />
    protected override void AttentionForwardCore(Tensor q, Tensor k, Tensor v, Segments sequences, AttentionHeads heads, float scale,
        Tensor output, Tensor logSumExp) => Op("AttentionForward").AttentionForward(q, k, v, sequences, heads, scale, output, logSumExp);
    /// <inheritdoc />
    protected override void AttentionBackwardCore(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
        Segments sequences, AttentionHeads heads, float scale, Tensor dq, Tensor dk, Tensor dv) =>
        Op("AttentionBackward").AttentionBackward(dOutput, q, k, v, output, logSumExp, sequences, heads, scale, dq, dk, dv);
    /// <inheritdoc />
    protected override void AttentionDecodeCore(Tensor q, Tensor keyCache, Tensor valueCache, Tensor cacheSlots, Tensor lengths,
        AttentionHeads heads, float scale, Tensor output) =>
        Op("AttentionDecode").AttentionDecode(q, keyCache, valueCache, cacheSlots, lengths, heads, scale, output);

    /// <inheritdoc />
    protected override void SwiGluForwardCore(Tensor gate, Tensor up, Tensor output) => Op("SwiGluForward").SwiGluForward(gate, up, output);
    /// <inheritdoc />
    protected override void SwiGluBackwardCore(Tensor dOutput, Tensor gate, Tensor up, Tensor dGate, Tensor dUp) =>
        Op("SwiGluBackward").SwiGluBackward(dOutput, gate, up, dGate, dUp);

    /// <inheritdoc />
    public override LogProbTiling PlanLogProb(int rows, int vocab, int width, DType storage) => _launch.PlanLogProb(rows, vocab, width, storage);

    /// <inheritdoc />
    protected override void LogProbForwardCore(Tensor hidden, Tensor weight, Tensor targets, float temperature,
        Tensor logProbs, Tensor entropy, Tensor logSumExp) =>
        Op("LogProbForward").LogProbForward(hidden, weight, targets, temperature, logProbs, entropy, logSumExp);
    /// <inheritdoc />
    protected override void LogProbBackwardCore(Tensor dLogProbs, Tensor? dEntropy, Tensor hidden, Tensor weight, Tensor targets,
        float temperature, Tensor entropy, Tensor logSumExp, Tensor dHidden, Tensor dWeight) =>
        Op("LogProbBackward").LogProbBackward(dLogProbs, dEntropy, hidden, weight, targets, temperature, entropy, logSumExp, dHidden, dWeight);

    /// <inheritdoc />
    protected override void GrpoAdvantagesCore(Tensor rewards, Segments groups, float epsilon, Tensor advantages) =>
        Op("GrpoAdvantages").GrpoAdvantages(rewards, groups, epsilon, advantages);
    /// <inheritdoc />
    protected override void BroadcastSegmentsCore(Tensor values, Segments segments, Tensor output) =>
        Op("BroadcastSegments").BroadcastSegments(values, segments, output);
    /// <inheritdoc />
    protected override void PolicyLossForwardCore(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor entropy,
        Tensor tokenWeights, Tensor? referenceLogProbs, PolicyLossOptions options, Tensor lossTerms) =>
        Op("PolicyLossForward").PolicyLossForward(logProbs, oldLogProbs, advantages, entropy, tokenWeights, referenceLogProbs, options, lossTerms);
    /// <inheritdoc />
    protected override void PolicyLossBackwardCore(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor tokenWeights,
        Tensor? referenceLogProbs, PolicyLossOptions options, Tensor dLogProbs, Tensor dEntropy) =>
        Op("PolicyLossBackward").PolicyLossBackward(logProbs, oldLogProbs, advantages, tokenWeights, referenceLogProbs, options, dLogProbs, dEntropy);

    /// <inheritdoc />
    protected override void AdamWStepCore(IReadOnlyList<AdamWSlot> slots, AdamWOptions options, int step, float gradientScale) =>
        Op("AdamWStep").AdamWStep(slots, options, step, gradientScale);
    /// <inheritdoc />
    protected override float GlobalNormCore(IReadOnlyList<Tensor> tensors) => Op("GlobalNorm").GlobalNorm(tensors);

    /// <inheritdoc />
    protected override void AdvanceDecodeCore(Tensor sampled, Tensor? stopTokens, Tensor remaining, Tensor emitted, DecodeInputs? next) =>
        Op("AdvanceDecode").AdvanceDecode(sampled, stopTokens, remaining, emitted, next);

    /// <inheritdoc />
    protected override void SampleCore(Tensor logits, SamplingOptions options, ulong seed, ulong counter, Tensor? streams, Tensor tokens, Tensor logProbs,
        Tensor? truncatedMass) =>
        Op("Sample").Sample(logits, options, seed, counter, streams, tokens, logProbs, truncatedMass);

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
            // The exact size (the runtimes give a zero-byte buffer a valid pointer): slack past the end would hide a
            // kernel's access beyond it from the emulator's memcheck, as it would not hide it from compute-sanitizer.
            _pointer = runtime.Allocate(sizeInBytes);
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
