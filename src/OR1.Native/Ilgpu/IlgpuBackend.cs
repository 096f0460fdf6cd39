using System.Buffers;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace OR1.Native.Ilgpu;

/// <summary>
/// The op contract as ILGPU kernels (one family per file, named like the Cpu backend's), over an ILGPU
/// accelerator: ILGPU's CPU accelerator, which simulates GPU groups, warps, shared memory and barriers
/// with one OS thread per GPU thread (about a thousand times slower than plain loops: tests only, at tiny
/// sizes), or a CUDA GPU through ILGPU's PTX backend.
/// </summary>
/// <remarks>
/// <para>Kernels are compiled once per accelerator, on first use, and shared by every backend over it.
/// Launch geometry comes from <see cref="IlgpuLaunchProfile"/>: warps of 32 and groups of 256 on CUDA,
/// groups of two small warps on the simulator.</para>
/// <para>Ops are queued on the accelerator's default stream and return without waiting;
/// <see cref="Synchronize"/> waits, and Download synchronises first. No kernel uses atomics, so every op
/// is deterministic run to run.</para>
/// <para>Index arguments (token ids, targets, row indices, positions, cache slots and lengths) are
/// checked on the host, so that a bad index is an <see cref="ArgumentException"/> naming the op and the
/// position rather than a fault inside a kernel: that costs one small download, and a synchronisation,
/// per op that takes indices. Construct with <c>checkIndices: false</c> to skip it on trusted hot paths.</para>
/// </remarks>
public sealed class IlgpuBackend : BackendBase
{
    private static readonly Lazy<(Context Context, Accelerator Accelerator)> s_sharedSimulator = new(CreateSimulatorAccelerator);

    private readonly IlgpuDevice _device;
    private readonly Context? _ownedContext;
    private readonly Accelerator? _ownedAccelerator;
    private readonly bool _checkIndices;
    private readonly Dictionary<(float Theta, int HeadDim), MemoryBuffer1D<float, Stride1D.Dense>> _invFreq = new();
    private readonly MemoryBuffer1D<byte, Stride1D.Dense>?[] _scratch = new MemoryBuffer1D<byte, Stride1D.Dense>?[(int)ScratchSlot.Count];

    private enum ScratchSlot { Logits, RowState, RowDots, Partials, SortKeys, Result, Dummy, Count }

    /// <summary>
    /// A backend over an accelerator the caller created and keeps ownership of. The accelerator's context
    /// must have ILGPU.Algorithms enabled (<c>Context.Create(b =&gt; b.Cuda().EnableAlgorithms())</c>): the
    /// kernels' exp/log compile to PTX through it.
    /// </summary>
    public IlgpuBackend(Accelerator accelerator, bool checkIndices = true)
        : this(accelerator, null, null, checkIndices)
    {
    }

    private IlgpuBackend(Accelerator accelerator, Context? ownedContext, Accelerator? ownedAccelerator, bool checkIndices)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        _device = IlgpuDevice.For(accelerator);
        _ownedContext = ownedContext;
        _ownedAccelerator = ownedAccelerator;
        _checkIndices = checkIndices;
    }

    /// <summary>
    /// A backend on its own ILGPU CPU accelerator (the GPU simulator): warps of <paramref name="warpSize"/>
    /// threads, groups of <paramref name="warpsPerGroup"/> warps, <paramref name="multiprocessors"/> groups
    /// at a time. For tests: every simulated thread is an OS thread.
    /// </summary>
    public static IlgpuBackend CreateCpuSimulator(int warpSize = 4, int warpsPerGroup = 2, int multiprocessors = 2)
    {
        // Warp reductions are XOR butterflies (power-of-two warps); shared tiles hold at most 8 warps.
        if (warpSize < 2 || !System.Numerics.BitOperations.IsPow2(warpSize) || warpSize > 32)
            throw new ArgumentOutOfRangeException(nameof(warpSize), warpSize, "expected a power of two from 2 to 32");
        if (warpsPerGroup < 1 || !System.Numerics.BitOperations.IsPow2(warpsPerGroup) || warpsPerGroup > IlgpuAttention.MaxWarps)
            throw new ArgumentOutOfRangeException(nameof(warpsPerGroup), warpsPerGroup, $"expected a power of two from 1 to {IlgpuAttention.MaxWarps}");
        ArgumentOutOfRangeException.ThrowIfLessThan(multiprocessors, 1);
        var (context, accelerator) = CreateSimulatorAccelerator(warpSize, warpsPerGroup, multiprocessors);
        return new IlgpuBackend(accelerator, context, accelerator, checkIndices: true);
    }

    /// <summary>
    /// A backend on one process-wide CPU simulator, whose compiled kernels every such backend reuses
    /// (compiling the kernels costs seconds; test fixtures each create a backend). Disposing the backend
    /// leaves the shared simulator alive.
    /// </summary>
    public static IlgpuBackend OnSharedCpuSimulator() => new(s_sharedSimulator.Value.Accelerator, checkIndices: true);

    /// <summary>
    /// A backend on CUDA device <paramref name="deviceIndex"/> through ILGPU's PTX backend, or a
    /// <see cref="BackendUnavailableException"/> naming what is missing (no driver, no device).
    /// </summary>
    public static IlgpuBackend CreateCuda(int deviceIndex = 0, bool checkIndices = true)
    {
        Context? context = null;
        try
        {
            context = Context.Create(builder => builder.Cuda().EnableAlgorithms());
            var devices = context.GetCudaDevices();
            if (devices.Count == 0)
                throw new BackendUnavailableException(BackendKind.Ilgpu,
                    "ILGPU found no CUDA device (no NVIDIA GPU, or no CUDA driver: libcuda.so / nvcuda.dll could not be loaded)");
            if ((uint)deviceIndex >= (uint)devices.Count)
                throw new BackendUnavailableException(BackendKind.Ilgpu, $"CUDA device {deviceIndex} was requested but ILGPU found {devices.Count}");
            var accelerator = devices[deviceIndex].CreateAccelerator(context);
            return new IlgpuBackend(accelerator, context, accelerator, checkIndices);
        }
        catch (BackendUnavailableException)
        {
            context?.Dispose();
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            context?.Dispose();
            throw new BackendUnavailableException(BackendKind.Ilgpu, $"the CUDA accelerator could not be created: {e.Message}", e);
        }
    }

    private static (Context Context, Accelerator Accelerator) CreateSimulatorAccelerator() => CreateSimulatorAccelerator(4, 2, 2);

    private static (Context Context, Accelerator Accelerator) CreateSimulatorAccelerator(int warpSize, int warpsPerGroup, int multiprocessors)
    {
        var device = new CPUDevice(warpSize, warpsPerGroup, multiprocessors);
        var context = Context.Create(builder => builder.CPU(device).EnableAlgorithms());
        try
        {
            return (context, device.CreateCPUAccelerator(context, CPUAcceleratorMode.Parallel));
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public override BackendKind Kind => BackendKind.Ilgpu;

    /// <inheritdoc />
    public override string Description
    {
        get
        {
            var a = _device.Accelerator;
            var p = _device.Profile;
            string where = a.AcceleratorType == AcceleratorType.Cuda ? $"CUDA {a.Name}" : $"CPU simulator ({a.NumMultiprocessors} multiprocessors)";
            return $"Ilgpu ({where}, warps of {p.WarpSize}, groups of {p.BlockThreads})";
        }
    }

    /// <inheritdoc />
    public override BackendFacts Facts()
    {
        var a = _device.Accelerator;
        var p = _device.Profile;
        if (a is CudaAccelerator cuda)
        {
            long? free;
            try
            {
                free = cuda.GetFreeMemory();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                free = null;
            }
            var architecture = cuda.Architecture;
            return new BackendFacts(Kind, Description, StorageTypes,
                $"ILGPU's PTX backend (PTX ISA {cuda.InstructionSet}): each kernel compiled from .NET IL at its first use",
                Gpu: new GpuFacts(cuda.Name, cuda.DeviceId, cuda.NumMultiprocessors, architecture.Major, architecture.Minor,
                    cuda.MemorySize, free, $"{cuda.DriverVersion.Major}.{cuda.DriverVersion.Minor}", NvrtcVersion: null, CublasVersion: null));
        }
        return new BackendFacts(Kind, Description, StorageTypes,
            "ILGPU kernels run by ILGPU's CPU accelerator from .NET IL",
            Host: HostFacts.ForThisCpu(a.NumMultiprocessors * a.MaxNumThreadsPerMultiprocessor, emulation:
                $"ILGPU's GPU simulator: {a.NumMultiprocessors} multiprocessors, warps of {p.WarpSize}, groups of {p.BlockThreads}, one OS thread per GPU thread"));
    }

    /// <summary>The accelerator the kernels run on.</summary>
    public Accelerator Accelerator => _device.Accelerator;

    /// <summary>True on a CUDA GPU, false on the CPU simulator.</summary>
    public bool IsCuda => _device.Accelerator.AcceleratorType == AcceleratorType.Cuda;

    /// <summary>Vocabulary sizes up to this sample with one thread per row; larger ones with one group per row (tests lower it).</summary>
    internal int SamplingThreadRowVocabulary { get; set; } = -1;

    private IlgpuDevice Device => _device;

    // ---------------------------------------------------------------- views

    private static ArrayView<byte> Bytes(Tensor t) =>
        ((IlgpuBuffer)t.Buffer).Bytes.SubView(t.ElementOffset * t.DType.SizeOf(), t.SizeInBytes);

    private static ArrayView<float> F(Tensor t) => Bytes(t).Cast<float>();

    private static ArrayView<int> I(Tensor t) => Bytes(t).Cast<int>();

    /// <summary>A scratch buffer of at least <paramref name="count"/> elements, grown (after a synchronisation) when too small.</summary>
    private ArrayView<T> Scratch<T>(ScratchSlot slot, long count) where T : unmanaged
    {
        long bytes = Math.Max(16, count * Interop.SizeOf<T>());
        var buffer = _scratch[(int)slot];
        if (buffer is null || buffer.Length < bytes)
        {
            if (buffer is not null)
            {
                _device.Accelerator.Synchronize(); // kernels queued earlier may still read the old buffer
                buffer.Dispose();
            }
            buffer = _device.Accelerator.Allocate1D<byte>(Math.Max(bytes, (buffer?.Length ?? 0) * 2));
            buffer.MemSetToZero();
            _scratch[(int)slot] = buffer;
        }
        return ((ArrayView<byte>)buffer.View).SubView(0, count * Interop.SizeOf<T>()).Cast<T>();
    }

    // ---------------------------------------------------------------- memory

    /// <inheritdoc />
    protected override DeviceBuffer AllocateBuffer(long sizeInBytes) => new IlgpuBuffer(this, _device.Accelerator, sizeInBytes);

    /// <inheritdoc />
    protected override unsafe void UploadCore(ReadOnlySpan<byte> source, Tensor destination, long byteOffset)
    {
        if (source.Length == 0) return;
        // ILGPU takes a raw address of the host data: pin it so that the GC cannot move a managed array mid-copy.
        fixed (byte* host = source) Bytes(destination).SubView(byteOffset, source.Length).CopyFromCPU(ref *host, source.Length);
    }

    /// <inheritdoc />
    protected override unsafe void DownloadCore(Tensor source, Span<byte> destination, long byteOffset)
    {
        _device.Accelerator.Synchronize();
        if (destination.Length == 0) return;
        fixed (byte* host = destination) Bytes(source).SubView(byteOffset, destination.Length).CopyToCPU(ref *host, destination.Length);
    }

    /// <inheritdoc />
    public override void Synchronize() => _device.Accelerator.Synchronize();

    // ---------------------------------------------------------------- host-side index checks

    /// <summary>Downloads an Int32 tensor into a pooled array (return it to the pool).</summary>
    private int[] HostInts(Tensor t)
    {
        int count = checked((int)t.ElementCount);
        var values = ArrayPool<int>.Shared.Rent(Math.Max(1, count));
        DownloadCore(t, MemoryMarshal.AsBytes(values.AsSpan(0, count)), 0);
        return values;
    }

    private void CheckIndices(Tensor indices, int limit, Func<int, int, string> describe, string argument)
    {
        if (!_checkIndices) return;
        int count = checked((int)indices.ElementCount);
        var values = HostInts(indices);
        try
        {
            for (int i = 0; i < count; i++)
                if ((uint)values[i] >= (uint)limit) throw new ArgumentException(describe(values[i], i), argument);
        }
        finally { ArrayPool<int>.Shared.Return(values); }
    }

    // ---------------------------------------------------------------- elementwise

    /// <inheritdoc />
    protected override void FillCore(Tensor x, float value) => IlgpuElementwise.Fill(Device, F(x), value);

    /// <inheritdoc />
    protected override void CopyCore(Tensor source, Tensor destination)
    {
        if (source.SizeInBytes == 0) return;
        Bytes(source).CopyTo(Bytes(destination));
    }

    /// <inheritdoc />
    protected override void AddCore(Tensor a, Tensor b, Tensor output) => IlgpuElementwise.Add(Device, F(a), F(b), F(output));

    /// <inheritdoc />
    protected override void ScaleCore(Tensor x, float factor) => IlgpuElementwise.Scale(Device, F(x), factor);

    /// <inheritdoc />
    protected override void AddBiasCore(Tensor x, Tensor bias) => IlgpuElementwise.AddBias(Device, F(x), F(bias), x.Shape[1]);

    /// <inheritdoc />
    protected override void BiasBackwardCore(Tensor dOutput, Tensor dBias) =>
        IlgpuElementwise.ColumnSum(Device, F(dOutput), F(dOutput), F(dBias), F(dBias), dOutput.Shape[0], dOutput.Shape[1], mode: 0);

    /// <inheritdoc />
    protected override void GatherRowsCore(Tensor source, Tensor rowIndices, Tensor destination)
    {
        CheckRowIndices(rowIndices, source.Shape[0], nameof(GatherRows), "rowIndices");
        IlgpuElementwise.GatherRows(Device, Bytes(source), I(rowIndices), Bytes(destination), checked((int)(source.RowLength * source.DType.SizeOf())));
    }

    /// <inheritdoc />
    protected override void ScatterRowsCore(Tensor source, Tensor rowIndices, Tensor destination) =>
        ScatterInto(source, rowIndices, destination, destination.Shape[0], nameof(ScatterRows), "rowIndices");

    /// <inheritdoc />
    /// <remarks>ILGPU keeps keys in <see cref="KeyCacheLayout.Rows"/>: a scatter of rows into the pages' rows.</remarks>
    protected override void WriteKeyCacheCore(Tensor keys, Tensor cacheRows, Tensor keyCache) =>
        ScatterInto(keys, cacheRows, keyCache, keyCache.Shape[0] * keyCache.Shape[1], nameof(WriteKeyCache), "cacheRows");

    /// <summary>destination's row indices[i] = source's row i, the indices checked against <paramref name="rows"/> first.</summary>
    private void ScatterInto(Tensor source, Tensor indices, Tensor destination, int rows, string op, string argument)
    {
        CheckRowIndices(indices, rows, op, argument);
        IlgpuElementwise.ScatterRows(Device, Bytes(source), I(indices), Bytes(destination), checked((int)(source.RowLength * source.DType.SizeOf())));
    }

    /// <summary>Row indices in [0, rows), in the host backends' words.</summary>
    private void CheckRowIndices(Tensor indices, int rows, string op, string argument) =>
        CheckIndices(indices, rows, (v, i) => $"{op}: argument '{argument}' has {v} at position {i}, outside [0, {rows})", argument);

    // ---------------------------------------------------------------- GEMM

    /// <inheritdoc />
    protected override void MatMulCore(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c,
        float alpha, float beta, int batch, int m, int n, int k)
    {
        int lda = a.Shape[-1], ldb = b.Shape[-1], ldc = c.Shape[-1];
        long strideA = (long)a.Shape[-2] * lda, strideB = (long)b.Shape[-2] * ldb, strideC = (long)m * ldc;
        IlgpuGemm.Multiply(Device, F(a), transposeA, F(b), transposeB, F(c), batch, m, n, k, lda, ldb, ldc, strideA, strideB, strideC, alpha, beta);
    }

    // ---------------------------------------------------------------- embedding, norms, rope, swiglu

    /// <inheritdoc />
    protected override void EmbeddingForwardCore(Tensor tokenIds, Tensor table, Tensor output)
    {
        int vocab = table.Shape[0];
        CheckIndices(tokenIds, vocab, (v, i) => $"EmbeddingForward: argument 'tokenIds' has id {v} at position {i}, outside the table's vocabulary [0, {vocab})", "tokenIds");
        IlgpuEmbedding.Forward(Device, I(tokenIds), F(table), F(output), table.Shape[1]);
    }

    /// <inheritdoc />
    protected override void EmbeddingBackwardCore(Tensor tokenIds, Tensor dOutput, Tensor dTable)
    {
        int vocab = dTable.Shape[0], count = tokenIds.Shape[0];
        CheckIndices(tokenIds, vocab, (v, i) => $"EmbeddingBackward: argument 'tokenIds' has id {v} at position {i}, outside the table's vocabulary [0, {vocab})", "tokenIds");
        var keys = Scratch<ulong>(ScratchSlot.SortKeys, IlgpuEmbedding.KeyCount(count));
        IlgpuEmbedding.Backward(Device, I(tokenIds), F(dOutput), F(dTable), keys, count, dTable.Shape[1]);
    }

    /// <inheritdoc />
    protected override void RmsNormForwardCore(Tensor x, Tensor weight, float eps, Tensor output, Tensor invRms) =>
        IlgpuRmsNorm.Forward(Device, F(x), F(weight), eps, F(output), F(invRms), x.Shape[0], x.Shape[1]);

    /// <inheritdoc />
    protected override void RmsNormBackwardCore(Tensor dOutput, Tensor x, Tensor weight, Tensor invRms, Tensor dx, Tensor dWeight) =>
        IlgpuRmsNorm.Backward(Device, F(dOutput), F(x), F(weight), F(invRms), F(dx), F(dWeight), x.Shape[0], x.Shape[1]);

    /// <inheritdoc />
    protected override void RopeCore(Tensor input, Tensor positions, int numHeads, int headDim, float theta, Tensor output, bool inverse)
    {
        if (_checkIndices && positions.ElementCount > 0)
        {
            int count = checked((int)positions.ElementCount);
            var values = HostInts(positions);
            try
            {
                for (int n = 0; n < count; n++)
                    if (values[n] < 0)
                        throw new ArgumentException($"{(inverse ? "RopeBackward" : "RopeForward")}: argument 'positions' has {values[n]} at row {n}; positions must be non-negative", nameof(positions));
            }
            finally { ArrayPool<int>.Shared.Return(values); }
        }
        MemoryBuffer1D<float, Stride1D.Dense>? invFreq;
        lock (_invFreq)
        {
            if (!_invFreq.TryGetValue((theta, headDim), out invFreq))
            {
                var host = IlgpuRope.InverseFrequencies(theta, headDim);
                invFreq = _device.Accelerator.Allocate1D(host);
                _invFreq[(theta, headDim)] = invFreq;
            }
        }
        IlgpuRope.Apply(Device, F(input), I(positions), invFreq.View, F(output), input.Shape[0], numHeads, headDim, inverse);
    }

    /// <inheritdoc />
    protected override void SwiGluForwardCore(Tensor gate, Tensor up, Tensor output) => IlgpuSwiGlu.Forward(Device, F(gate), F(up), F(output));

    /// <inheritdoc />
    protected override void SwiGluBackwardCore(Tensor dOutput, Tensor gate, Tensor up, Tensor dGate, Tensor dUp) =>
        IlgpuSwiGlu.Backward(Device, F(dOutput), F(gate), F(up), F(dGate), F(dUp));

    // ---------------------------------------------------------------- attention

    private static void CheckHeadDim(string op, AttentionHeads heads)
    {
        if (heads.HeadDim > IlgpuAttention.MaxHeadDim)
            throw new NotSupportedException($"{op}: the Ilgpu backend's attention kernels support head dimensions up to {IlgpuAttention.MaxHeadDim}; got {heads.HeadDim}");
    }

    /// <inheritdoc />
    protected override void AttentionForwardCore(Tensor q, Tensor k, Tensor v, Segments sequences, AttentionHeads heads, float scale,
        Tensor output, Tensor logSumExp)
    {
        CheckHeadDim(nameof(AttentionForward), heads);
        var args = IlgpuAttention.Args(Device, q.Shape[0], heads, sequences.Count, scale);
        IlgpuAttention.Forward(Device, F(q), F(k), F(v), I(sequences.DeviceOffsets), F(output), F(logSumExp), args);
    }

    /// <inheritdoc />
    protected override void AttentionBackwardCore(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
        Segments sequences, AttentionHeads heads, float scale, Tensor dq, Tensor dk, Tensor dv)
    {
        CheckHeadDim(nameof(AttentionBackward), heads);
        int n = q.Shape[0];
        var args = IlgpuAttention.Args(Device, n, heads, sequences.Count, scale);
        var rowDots = Scratch<float>(ScratchSlot.RowDots, (long)n * heads.NumHeads);
        IlgpuAttention.Backward(Device, F(dOutput), F(q), F(k), F(v), F(output), F(logSumExp), I(sequences.DeviceOffsets), rowDots,
            F(dq), F(dk), F(dv), args);
    }

    /// <inheritdoc />
    protected override void AttentionDecodeCore(Tensor q, Tensor keyCache, Tensor valueCache, Tensor pageTable, Tensor lengths,
        AttentionHeads heads, float scale, Tensor output)
    {
        CheckHeadDim(nameof(AttentionDecode), heads);
        int pages = keyCache.Shape[0], pageSize = keyCache.Shape[1], pagesPerRow = pageTable.Shape[1], batch = q.Shape[0];
        long capacity = (long)pagesPerRow * pageSize;
        if (_checkIndices && batch > 0)
        {
            // The lengths first: they say which table entries a row reads (the others may hold anything).
            var values = HostInts(lengths);
            var table = HostInts(pageTable);
            try
            {
                PagedDecodeCheck.Validate(values.AsSpan(0, batch), table.AsSpan(0, batch * pagesPerRow), batch, pagesPerRow, pageSize, pages);
            }
            finally
            {
                ArrayPool<int>.Shared.Return(values);
                ArrayPool<int>.Shared.Return(table);
            }
        }
        var args = IlgpuAttention.Args(Device, 0, heads, 0, scale);
        args.Batch = batch;
        args.MaxLength = (int)Math.Min(int.MaxValue, capacity);
        args.Slots = pages;
        args.PageSize = pageSize;
        args.PagesPerRow = pagesPerRow;
        IlgpuAttention.Decode(Device, F(q), F(keyCache), F(valueCache), I(pageTable), I(lengths), F(output), args);
    }

    // ---------------------------------------------------------------- log-prob

    /// <inheritdoc />
    public override LogProbTiling PlanLogProb(int rows, int vocab, int width, DType storage)
    {
        // All rows at once against chunks of the vocabulary, and the per-row state.
        int chunk = IlgpuLogProb.ChunkColumns(Device, rows, vocab);
        long scratch = ((long)rows * chunk + (long)IlgpuLogProb.StateFields * rows) * sizeof(float);
        return new LogProbTiling(rows, vocab, Math.Max(1, rows), chunk, scratch);
    }

    /// <inheritdoc />
    protected override void LogProbForwardCore(Tensor hidden, Tensor weight, Tensor targets, float temperature,
        Tensor logProbs, Tensor entropy, Tensor logSumExp)
    {
        int rows = hidden.Shape[0], vocab = weight.Shape[0], width = hidden.Shape[1];
        CheckIndices(targets, vocab, (v, n) => $"LogProbForward: argument 'targets' has token {v} at row {n}, outside the vocabulary [0, {vocab})", nameof(targets));
        int chunk = IlgpuLogProb.ChunkColumns(Device, rows, vocab);
        var logits = Scratch<float>(ScratchSlot.Logits, (long)rows * chunk);
        var state = Scratch<float>(ScratchSlot.RowState, (long)IlgpuLogProb.StateFields * rows);
        IlgpuLogProb.Forward(Device, F(hidden), F(weight), I(targets), temperature, F(logProbs), F(entropy), F(logSumExp), logits, state,
            rows, vocab, width, chunk);
    }

    /// <inheritdoc />
    protected override void LogProbBackwardCore(Tensor dLogProbs, Tensor? dEntropy, Tensor hidden, Tensor weight, Tensor targets,
        float temperature, Tensor entropy, Tensor logSumExp, Tensor dHidden, Tensor dWeight)
    {
        int rows = hidden.Shape[0], vocab = weight.Shape[0], width = hidden.Shape[1];
        CheckIndices(targets, vocab, (v, n) => $"LogProbBackward: argument 'targets' has token {v} at row {n}, outside the vocabulary [0, {vocab})", nameof(targets));
        int chunk = IlgpuLogProb.ChunkColumns(Device, rows, vocab);
        var logits = Scratch<float>(ScratchSlot.Logits, (long)rows * chunk);
        IlgpuLogProb.Backward(Device, F(dLogProbs), dEntropy is null ? F(dLogProbs) : F(dEntropy), dEntropy is not null, F(hidden), F(weight),
            I(targets), temperature, F(entropy), F(logSumExp), F(dHidden), F(dWeight), logits, rows, vocab, width, chunk);
    }

    // ---------------------------------------------------------------- GRPO

    /// <inheritdoc />
    protected override void GrpoAdvantagesCore(Tensor rewards, Segments groups, float epsilon, Tensor advantages) =>
        IlgpuGrpo.Advantages(Device, F(rewards), I(groups.DeviceOffsets), groups.Count, epsilon, F(advantages));

    /// <inheritdoc />
    protected override void BroadcastSegmentsCore(Tensor values, Segments segments, Tensor output) =>
        IlgpuGrpo.Broadcast(Device, F(values), I(segments.DeviceOffsets), segments.Count, F(output));

    /// <inheritdoc />
    protected override void PolicyLossForwardCore(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor entropy,
        Tensor tokenWeights, Tensor? referenceLogProbs, PolicyLossOptions options, Tensor lossTerms)
    {
        int count = logProbs.Shape[0];
        var args = IlgpuGrpo.Args(options, count);
        var partials = Scratch<double>(ScratchSlot.Partials, (long)IlgpuGrpo.LossGroups(Device, count) * IlgpuGrpo.PartialTerms);
        IlgpuGrpo.LossForward(Device, F(logProbs), F(oldLogProbs), F(advantages), F(entropy), F(tokenWeights),
            referenceLogProbs is null ? F(logProbs) : F(referenceLogProbs), partials, F(lossTerms), args);
    }

    /// <inheritdoc />
    protected override void PolicyLossBackwardCore(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor tokenWeights,
        Tensor? referenceLogProbs, PolicyLossOptions options, Tensor dLogProbs, Tensor dEntropy) =>
        IlgpuGrpo.LossBackward(Device, F(logProbs), F(oldLogProbs), F(advantages), F(tokenWeights),
            referenceLogProbs is null ? F(logProbs) : F(referenceLogProbs), F(dLogProbs), F(dEntropy), IlgpuGrpo.Args(options, logProbs.Shape[0]));

    // ---------------------------------------------------------------- optimizer

    /// <inheritdoc />
    protected override void AdamWStepCore(IReadOnlyList<AdamWSlot> slots, AdamWOptions options, int step, float gradientScale)
    {
        foreach (var slot in slots)
            IlgpuAdamW.Step(Device, F(slot.Parameter), F(slot.Gradient), F(slot.FirstMoment), F(slot.SecondMoment),
                IlgpuAdamW.Args(options, slot.ApplyWeightDecay, step, gradientScale));
    }

    /// <inheritdoc />
    protected override float GlobalNormCore(IReadOnlyList<Tensor> tensors)
    {
        int total = 0;
        var groups = new int[tensors.Count];
        for (int i = 0; i < tensors.Count; i++) total += groups[i] = tensors[i].ElementCount == 0 ? 0 : IlgpuReduce.Groups(Device, tensors[i].ElementCount);
        if (total == 0) return 0f;
        var partials = Scratch<double>(ScratchSlot.Partials, total);
        int first = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            if (groups[i] == 0) continue;
            IlgpuReduce.SumOfSquares(Device, F(tensors[i]), partials, first, groups[i]);
            first += groups[i];
        }
        var result = Scratch<double>(ScratchSlot.Result, 1);
        IlgpuReduce.SumPartials(Device, partials, result, total);
        _device.Accelerator.Synchronize();
        double sum = 0;
        result.CopyToCPU(ref sum, 1);
        return (float)Math.Sqrt(sum);
    }

    // ---------------------------------------------------------------- sampling

    /// <inheritdoc />
    protected override void SampleCore(Tensor logits, SamplingOptions options, ulong seed, ulong counter, Tensor? streams, Tensor tokens, Tensor logProbs,
        Tensor? truncatedMass)
    {
        var args = new IlgpuSampling.SampleArgs
        {
            Rows = logits.Shape[0], Vocab = logits.Shape[1], TopK = options.TopK, Temperature = options.Temperature, TopP = options.TopP,
            Seed = seed, Counter = counter, Streamed = streams is null ? 0 : 1, Truncated = truncatedMass is null ? 0 : 1,
        };
        int limit = SamplingThreadRowVocabulary >= 0 ? SamplingThreadRowVocabulary : _device.Profile.SamplingThreadRowVocabulary;
        // Without streams (or a truncated-mass output) the kernels get the tokens (the log-probs) as a stand-in view that they never touch.
        IlgpuSampling.Sample(Device, F(logits), streams is null ? I(tokens) : I(streams), I(tokens), F(logProbs),
            truncatedMass is null ? F(logProbs) : F(truncatedMass), args, limit);
    }

    /// <inheritdoc />
    protected override void AdvanceDecodeCore(Tensor sampled, Tensor? stopTokens, Tensor remaining, Tensor emitted, DecodeInputs? next)
    {
        var args = new IlgpuDecodeAdvance.AdvanceArgs
        {
            Rows = sampled.Shape[0], StopCount = stopTokens?.Shape[0] ?? 0, Advance = next is null ? 0 : 1,
            TableWidth = next?.PageTable.Shape[1] ?? 0, PageSize = next?.PageSize ?? 1, SinkRow = next?.SinkRow ?? 0,
        };
        if (next is { } n && _checkIndices)
        {
            // The kernel reads the next page without a check of its own: every running row's is checked here first.
            int[] hostSampled = HostInts(sampled), hostRemaining = HostInts(remaining), hostPositions = HostInts(n.Positions), hostTable = HostInts(n.PageTable);
            int[] hostStops = stopTokens is null ? [] : HostInts(stopTokens);
            try
            {
                int rows = args.Rows;
                var (row, position) = Cpu.CpuDecodeAdvance.FindMissingPage(hostSampled.AsSpan(0, rows), hostStops.AsSpan(0, args.StopCount),
                    hostRemaining.AsSpan(0, rows), hostPositions.AsSpan(0, rows), hostTable.AsSpan(0, rows * args.TableWidth), args.TableWidth, args.PageSize);
                if (row >= 0) throw new ArgumentException(Cpu.CpuDecodeAdvance.MissingPageMessage(row, position, args.TableWidth), "next");
            }
            finally
            {
                foreach (var array in new[] { hostSampled, hostRemaining, hostPositions, hostTable }) ArrayPool<int>.Shared.Return(array);
                if (stopTokens is not null) ArrayPool<int>.Shared.Return(hostStops);
            }
        }
        // Without a stop list or next inputs the kernel gets stand-in views it never reads or writes.
        var standIn = I(emitted);
        IlgpuDecodeAdvance.Advance(Device, I(sampled), stopTokens is null ? standIn : I(stopTokens), I(remaining), I(emitted),
            next is { } t ? I(t.Tokens) : standIn, next is { } po ? I(po.Positions) : standIn, next is { } l ? I(l.Lengths) : standIn,
            next is { } st ? I(st.Streams) : standIn, next is { } c ? I(c.CacheRows) : standIn, next is { } pt ? I(pt.PageTable) : standIn, args);
    }

    // ---------------------------------------------------------------- lifetime

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        try { _device.Accelerator.Synchronize(); } catch (ObjectDisposedException) { }
        foreach (var buffer in _scratch) buffer?.Dispose();
        foreach (var buffer in _invFreq.Values) buffer.Dispose();
        _invFreq.Clear();
        _ownedAccelerator?.Dispose();
        _ownedContext?.Dispose();
    }
}
