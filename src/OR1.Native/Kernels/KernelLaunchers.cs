namespace OR1.Native.Kernels;

/// <summary>
/// The launch layer of the kernels in kernels/*.cu, written once for every device runtime: for each op
/// it checks what only the data can tell (index ranges, with the contract's messages), picks grid,
/// block and shared memory, builds the argument list and launches through <see cref="IKernelRuntime"/>.
/// The comment above each kernel in its .cu file states the launch shape these methods follow.
/// Arguments have passed <see cref="BackendBase"/>'s checks already.
/// </summary>
internal sealed unsafe class KernelLaunchers : IDisposable
{
    /// <summary>Attention kernels keep up to 8 head-dim columns per lane.</summary>
    public const int MaxHeadDim = 256;

    private const int AdamWChunk = 4096;         // ADAMW_CHUNK
    private const int SumsqChunk = 16384;        // SUMSQ_CHUNK
    private const int SumsqThreads = 256;        // SUMSQ_THREADS
    private const int SampleSharedBytes = 102_400; // SAMPLE_SHARED_BYTES: the radix select's three histograms

    private readonly InstrumentedRuntime _rt;
    private readonly ScratchBuffers _scratch;

    /// <summary>Changes whenever a scratch buffer moves (<see cref="ScratchBuffers.Epoch"/>).</summary>
    public long ScratchEpoch => _scratch.Epoch;
    private long[] _normTable = [];
    private long[] _adamWTable = [];

    public KernelLaunchers(InstrumentedRuntime runtime)
    {
        _rt = runtime;
        _scratch = new ScratchBuffers(runtime);
    }

    public IKernelRuntime Runtime => _rt;

    private static nint P(Tensor t) => t.DevicePointer;
    private static nint P(Tensor? t, bool _) => t is null ? 0 : t.DevicePointer;

    /// <summary>The exported name of a storage kernel for <paramref name="storage"/>: name_f32 or name_bf16 (see OR1_STORAGE_KERNELS).</summary>
    private static string K(string name, DType storage) => storage switch
    {
        DType.Float32 => name + "_f32",
        DType.BFloat16 => name + "_bf16",
        _ => throw new ArgumentOutOfRangeException(nameof(storage), storage, "storage kernels exist for Float32 and BFloat16"),
    };

    /// <summary>The address of row <paramref name="row"/> of a row-major matrix of <paramref name="width"/> elements of <paramref name="dtype"/>.</summary>
    private static nint Row(nint matrix, long row, int width, DType dtype) => matrix + (nint)(row * width * dtype.SizeOf());

    /// <summary>Elements of <paramref name="storage"/> in one 16-byte pack (Pack&lt;S&gt;::N in kernels/vector_io.cuh).</summary>
    private static int PackElements(DType storage) => 16 / storage.SizeOf();

    /// <summary>Blocks for a grid-stride loop over <paramref name="n"/> items of <paramref name="threads"/> threads each.</summary>
    private uint StrideGrid(long n, int threads = 256) => (uint)Math.Clamp((n + threads - 1) / threads, 1, _rt.GridStrideBlocks);

    private static uint Ceil(long n, int d) => (uint)((n + d - 1) / d);

    /// <summary>
    /// Every launch that asks for dynamic shared memory calls this first: above 48 KB the kernel's
    /// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES must be raised, or the launch fails on a GPU (and on
    /// the emulator, which enforces the same rule, so a launcher that forgets fails in CI).
    /// </summary>
    private void Shared(string kernel, int bytes)
    {
        if (SharedMemoryLimits.NeedsOptIn(bytes)) _rt.EnsureDynamicSharedMemory(kernel, bytes);
    }

    // ---------------------------------------------------------------- index checks

    /// <summary>
    /// A check id for a kernel that indexes memory with values only the device holds: the kernel skips a bad value
    /// and reports it to the error record (kernels/common.cuh), which the host reads at its next wait (DeviceErrors),
    /// so the op does not wait for the host here. Returns the record's address and the id for the kernel's arguments.
    /// </summary>
    private (nint Record, uint Id) Check(string op, IndexCheck kind, int bound)
    {
        var errors = _rt.Errors;
        uint id = errors.Register(op, kind, bound);
        return (errors.Record, id);
    }

    // ---------------------------------------------------------------- elementwise

    public void Fill(Tensor x, float value)
    {
        long n = x.ElementCount;
        if (n == 0) return;
        var a = new KernelArgs();
        _rt.Launch(K("fill", x.DType), StrideGrid(n), 256, 0, ref a.Ptr(P(x)).Long(n).Float(value));
    }

    public void Copy(Tensor source, Tensor destination)
    {
        if (source.SizeInBytes == 0) return;
        _rt.CopyDeviceToDevice(P(source), P(destination), source.SizeInBytes);
    }

    public void Convert(Tensor source, Tensor destination)
    {
        long n = source.ElementCount;
        if (n == 0) return;
        string kernel = source.DType == DType.Float32 ? "convert_f32_bf16" : "convert_bf16_f32";
        var a = new KernelArgs();
        _rt.Launch(kernel, StrideGrid(n), 256, 0, ref a.Ptr(P(source)).Ptr(P(destination)).Long(n));
    }

    public void Add(Tensor x, Tensor y, Tensor output)
    {
        long n = x.ElementCount;
        if (n == 0) return;
        var a = new KernelArgs();
        _rt.Launch(K("add", x.DType), StrideGrid(n), 256, 0, ref a.Ptr(P(x)).Ptr(P(y)).Ptr(P(output)).Long(n));
    }

    public void Scale(Tensor x, float factor)
    {
        long n = x.ElementCount;
        if (n == 0) return;
        var a = new KernelArgs();
        _rt.Launch(K("scale", x.DType), StrideGrid(n), 256, 0, ref a.Ptr(P(x)).Long(n).Float(factor));
    }

    public void AddBias(Tensor x, Tensor bias)
    {
        int rows = x.Shape[0], width = x.Shape[1];
        if ((long)rows * width == 0) return;
        var a = new KernelArgs();
        _rt.Launch(K("add_bias", x.DType), StrideGrid((long)rows * width), 256, 0, ref a.Ptr(P(x)).Ptr(P(bias)).Int(rows).Int(width));
    }

    public void BiasBackward(Tensor dOutput, Tensor dBias)
    {
        int rows = dOutput.Shape[0], width = dOutput.Shape[1];
        if (rows == 0 || width == 0) return;
        var plan = ColumnSumPlan.For(rows, width, dOutput.DType);
        nint partials = ColumnPartials(plan);
        var a = new KernelArgs();
        _rt.Launch(K("bias_backward", dOutput.DType), new Dim3(plan.RowBlocks, plan.Tiles), ColumnSumPlan.Threads, 0,
            ref a.Ptr(P(dOutput)).Int(rows).Int(width).Int(plan.RowsPerBlock).Ptr(partials).Int(plan.Stride));
        ReduceColumnPartials(plan, partials, width, P(dBias));
    }

    /// <summary>Scratch for the partial sums of <paramref name="plan"/>.</summary>
    private nint ColumnPartials(in ColumnSumPlan plan) => _scratch.Get(ScratchBuffers.Slot.ColumnPartials, plan.PartialBytes);

    /// <summary>Stage 2: <paramref name="output"/>[c] += the sum of column c's partials in row-block order (fp32, accumulating).</summary>
    private void ReduceColumnPartials(in ColumnSumPlan plan, nint partials, int width, nint output)
    {
        var a = new KernelArgs();
        _rt.Launch("column_partials_reduce", Ceil(width, ColumnSumPlan.ReduceColumns), ColumnSumPlan.ReduceThreads, 0,
            ref a.Ptr(partials).Int((int)plan.RowBlocks).Int(plan.Stride).Int(width).Ptr(output));
    }

    public void GatherRows(Tensor source, Tensor rowIndices, Tensor destination) =>
        MoveRows("gather_rows", nameof(IBackend.GatherRows), source, rowIndices, destination, source.Shape[0]);

    public void ScatterRows(Tensor source, Tensor rowIndices, Tensor destination) =>
        MoveRows("scatter_rows", nameof(IBackend.ScatterRows), source, rowIndices, destination, destination.Shape[0]);

    /// <summary>The kernel backends keep keys in <see cref="KeyCacheLayout.Rows"/>: a scatter of rows into the pages' rows.</summary>
    /// <remarks>Cache rows are Int32, so a cache of more than 2^31 - 1 rows is addressed up to there: the bound is clamped,
    /// as AttentionDecode's capacity is, rather than wrapped to a negative count that would refuse every row.</remarks>
    public void WriteKeyCache(Tensor keys, Tensor cacheRows, Tensor keyCache) =>
        MoveRows("scatter_rows", nameof(IBackend.WriteKeyCache), keys, cacheRows, keyCache,
            (int)Math.Min(int.MaxValue, (long)keyCache.Shape[0] * keyCache.Shape[1]), IndexCheck.CacheRow);

    private void MoveRows(string kernel, string op, Tensor source, Tensor rowIndices, Tensor destination, int indexedRows,
        IndexCheck kind = IndexCheck.RowIndex)
    {
        int count = rowIndices.Shape[0];
        long rowBytes = source.RowLength * source.DType.SizeOf();
        if (count == 0) return;
        var (record, check) = Check(op, kind, indexedRows);
        var a = new KernelArgs();
        _rt.Launch(kernel, (uint)Math.Min(count, _rt.GridStrideBlocks), 128, 0,
            ref a.Ptr(P(source)).Ptr(P(rowIndices)).Ptr(P(destination)).Int(count).Long(rowBytes).Int(indexedRows).Ptr(record).UInt(check));
    }

    // ---------------------------------------------------------------- GEMM

    public void MatMul(Tensor x, bool transposeA, Tensor y, bool transposeB, Tensor c, float alpha, float beta, int batch, int m, int n, int k)
    {
        if (batch == 0 || m == 0 || n == 0) return;
        int lda = x.Shape[-1], ldb = y.Shape[-1], ldc = c.Shape[-1];
        long strideA = (long)x.Shape[-2] * lda, strideB = (long)y.Shape[-2] * ldb, strideC = (long)m * ldc;
        _rt.Gemm(new GemmTypes(x.DType, c.DType), transposeA, transposeB, m, n, k, alpha, P(x), lda, strideA, P(y), ldb, strideB, beta, P(c), ldc, strideC, batch);
    }

    // ---------------------------------------------------------------- embedding

    public void EmbeddingForward(Tensor tokenIds, Tensor table, Tensor output)
    {
        int count = tokenIds.Shape[0], vocab = table.Shape[0], width = table.Shape[1];
        if (count == 0) return;
        var (record, check) = Check(nameof(IBackend.EmbeddingForward), IndexCheck.TokenId, vocab);
        var a = new KernelArgs();
        _rt.Launch(K("embedding_forward", table.DType), (uint)Math.Min(count, _rt.GridStrideBlocks), 128, 0,
            ref a.Ptr(P(tokenIds)).Ptr(P(table)).Ptr(P(output)).Int(count).Int(width).Int(vocab).Ptr(record).UInt(check));
    }

    public void EmbeddingBackward(Tensor tokenIds, Tensor dOutput, Tensor dTable)
    {
        int count = tokenIds.Shape[0], vocab = dTable.Shape[0], width = dTable.Shape[1];
        if (count == 0 || width == 0) return; // with width 0 no id is dereferenced, so none needs checking
        var (record, check) = Check(nameof(IBackend.EmbeddingBackward), IndexCheck.TokenId, vocab);
        uint columnBlocks = Ceil(width, 128 * PackElements(dOutput.DType)); // a thread owns one pack of columns
        int buckets = (int)Math.Clamp(_rt.GridStrideBlocks / columnBlocks, 1, Math.Max(1, vocab));
        var a = new KernelArgs();
        _rt.Launch(K("embedding_backward", dOutput.DType), new Dim3((uint)buckets, columnBlocks), 128, 0,
            ref a.Ptr(P(tokenIds)).Ptr(P(dOutput)).Ptr(P(dTable)).Int(count).Int(width).Int(buckets).Int(vocab).Ptr(record).UInt(check));
    }

    // ---------------------------------------------------------------- RMSNorm, RoPE, SwiGLU

    public void RmsNormForward(Tensor x, Tensor weight, float eps, Tensor output, Tensor invRms)
    {
        int rows = x.Shape[0], width = x.Shape[1];
        if (rows == 0) return;
        var a = new KernelArgs();
        _rt.Launch(K("rmsnorm_forward", x.DType), rows, _rt.RowThreads, 0,
            ref a.Ptr(P(x)).Ptr(P(weight)).Float(eps).Ptr(P(output)).Ptr(P(invRms)).Int(rows).Int(width));
    }

    public void RmsNormBackward(Tensor dOutput, Tensor x, Tensor weight, Tensor invRms, Tensor dx, Tensor dWeight)
    {
        int rows = x.Shape[0], width = x.Shape[1];
        if (rows == 0 || width == 0) return;
        var a = new KernelArgs();
        _rt.Launch(K("rmsnorm_backward_dx", x.DType), rows, _rt.RowThreads, 0,
            ref a.Ptr(P(dOutput)).Ptr(P(x)).Ptr(P(weight)).Ptr(P(invRms)).Ptr(P(dx)).Int(rows).Int(width));
        var plan = ColumnSumPlan.For(rows, width, x.DType);
        nint partials = ColumnPartials(plan);
        var b = new KernelArgs();
        _rt.Launch(K("rmsnorm_backward_dw", x.DType), new Dim3(plan.RowBlocks, plan.Tiles), ColumnSumPlan.Threads, 0,
            ref b.Ptr(P(dOutput)).Ptr(P(x)).Ptr(P(invRms)).Int(rows).Int(width).Int(plan.RowsPerBlock).Ptr(partials).Int(plan.Stride));
        ReduceColumnPartials(plan, partials, width, P(dWeight));
    }

    public void Rope(Tensor input, Tensor positions, int numHeads, int headDim, float theta, Tensor output, bool inverse)
    {
        int rows = input.Shape[0];
        long pairs = (long)rows * numHeads * (headDim / 2);
        if (pairs == 0) return;
        var (record, check) = Check(inverse ? "RopeBackward" : "RopeForward", IndexCheck.Position, 0);
        var a = new KernelArgs();
        _rt.Launch(K("rope_apply", input.DType), StrideGrid(pairs), 256, 0,
            ref a.Ptr(P(input)).Ptr(P(positions)).Ptr(P(output)).Int(rows).Int(numHeads).Int(headDim).Float(theta).Float(inverse ? -1f : 1f)
                .Ptr(record).UInt(check));
    }

    public void SwiGluForward(Tensor gate, Tensor up, Tensor output)
    {
        long n = gate.ElementCount;
        if (n == 0) return;
        var a = new KernelArgs();
        _rt.Launch(K("swiglu_forward", gate.DType), StrideGrid(n), 256, 0, ref a.Ptr(P(gate)).Ptr(P(up)).Ptr(P(output)).Long(n));
    }

    public void SwiGluBackward(Tensor dOutput, Tensor gate, Tensor up, Tensor dGate, Tensor dUp)
    {
        long n = gate.ElementCount;
        if (n == 0) return;
        var a = new KernelArgs();
        _rt.Launch(K("swiglu_backward", gate.DType), StrideGrid(n), 256, 0, ref a.Ptr(P(dOutput)).Ptr(P(gate)).Ptr(P(up)).Ptr(P(dGate)).Ptr(P(dUp)).Long(n));
    }

    // ---------------------------------------------------------------- attention

    private static void CheckHeadDim(string op, AttentionHeads heads)
    {
        if (heads.HeadDim > MaxHeadDim)
            throw new ArgumentException($"{op}: argument 'heads' has HeadDim {heads.HeadDim}; the CUDA attention kernels support head dims up to {MaxHeadDim}", "heads");
    }

    /// <summary>The largest grid y or z a GPU launches (x goes to 2^31 - 1): cuLaunchKernel refuses more.</summary>
    public const int MaxGridYZ = 65535;

    /// <summary>
    /// Sequences of the attention launch that starts at sequence <paramref name="from"/>. The attention kernels take the
    /// sequence from blockIdx.y, and a micro-batch may pack more than <see cref="MaxGridYZ"/> sequences (65,536 tokens,
    /// the planner's cap, of one-token sequences), so the launchers cover them in groups of at most that many.
    /// </summary>
    private static uint SequenceGroup(Segments sequences, int from) => (uint)Math.Min(MaxGridYZ, sequences.Count - from);

    /// <summary>The offsets a group's launch reads: from its first sequence on (their values stay absolute packed rows).</summary>
    private static nint GroupOffsets(Segments sequences, int from) => P(sequences.DeviceOffsets) + (nint)from * sizeof(int);

    public void AttentionForward(Tensor q, Tensor k, Tensor v, Segments sequences, AttentionHeads heads, float scale, Tensor output, Tensor logSumExp)
    {
        CheckHeadDim(nameof(IBackend.AttentionForward), heads);
        if (sequences.Total == 0 || sequences.MaxLength == 0) return;
        int d = heads.HeadDim;
        var kernels = AttentionKernels.For(q.DType, d, q, k, v, output);
        int shared = kernels.ForwardSharedBytes(d);
        string kernel = kernels.Forward(q.DType);
        Shared(kernel, shared);
        for (int from = 0; from < sequences.Count; from += MaxGridYZ)
        {
            var grid = new Dim3(Ceil(sequences.MaxLength, kernels.QueryRows), SequenceGroup(sequences, from), (uint)heads.NumHeads);
            var a = new KernelArgs();
            _rt.Launch(kernel, grid, AttentionKernels.Threads, shared,
                ref a.Ptr(P(q)).Ptr(P(k)).Ptr(P(v)).Ptr(GroupOffsets(sequences, from)).Ptr(P(output)).Ptr(P(logSumExp))
                    .Int(heads.NumHeads).Int(heads.NumKvHeads).Int(d).Float(scale));
        }
    }

    public void AttentionBackward(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
        Segments sequences, AttentionHeads heads, float scale, Tensor dq, Tensor dk, Tensor dv)
    {
        CheckHeadDim(nameof(IBackend.AttentionBackward), heads);
        int n = sequences.Total;
        if (n == 0 || sequences.MaxLength == 0) return;
        int d = heads.HeadDim;
        nint di = _scratch.Get(ScratchBuffers.Slot.AttentionDi, (long)n * heads.NumHeads * sizeof(float));
        var a = new KernelArgs();
        _rt.Launch(K("attention_backward_dot", q.DType), Math.Min(Ceil((long)n * heads.NumHeads, 4), (uint)_rt.GridStrideBlocks), 128, 0,
            ref a.Ptr(P(dOutput)).Ptr(P(output)).Ptr(di).Int(n).Int(heads.NumHeads).Int(d));

        var kernels = AttentionKernels.For(q.DType, d, dOutput, q, k, v, dq, dk, dv);
        int sharedQ = kernels.DqSharedBytes(d);
        string kernelQ = kernels.BackwardDq(q.DType);
        Shared(kernelQ, sharedQ);
        for (int from = 0; from < sequences.Count; from += MaxGridYZ)
        {
            var gridQ = new Dim3(Ceil(sequences.MaxLength, kernels.QueryRows), SequenceGroup(sequences, from), (uint)heads.NumHeads);
            var b = new KernelArgs();
            _rt.Launch(kernelQ, gridQ, AttentionKernels.Threads, sharedQ,
                ref b.Ptr(P(dOutput)).Ptr(P(q)).Ptr(P(k)).Ptr(P(v)).Ptr(P(logSumExp)).Ptr(di).Ptr(GroupOffsets(sequences, from)).Ptr(P(dq))
                    .Int(heads.NumHeads).Int(heads.NumKvHeads).Int(d).Float(scale));
        }

        int sharedKv = kernels.DkvSharedBytes(d);
        var (first, second) = kernels.BackwardKv(q.DType);
        foreach (string? kernelKv in (ReadOnlySpan<string?>)[first, second])
        {
            if (kernelKv is null) continue;
            Shared(kernelKv, sharedKv);
            for (int from = 0; from < sequences.Count; from += MaxGridYZ)
            {
                var gridKv = new Dim3(Ceil(sequences.MaxLength, kernels.KeyRows), SequenceGroup(sequences, from), (uint)heads.NumKvHeads);
                var c = new KernelArgs();
                _rt.Launch(kernelKv, gridKv, AttentionKernels.Threads, sharedKv,
                    ref c.Ptr(P(dOutput)).Ptr(P(q)).Ptr(P(k)).Ptr(P(v)).Ptr(P(logSumExp)).Ptr(di).Ptr(GroupOffsets(sequences, from)).Ptr(P(dk)).Ptr(P(dv))
                        .Int(heads.NumHeads).Int(heads.NumKvHeads).Int(d).Float(scale));
            }
        }
    }

    /// <summary>
    /// Flash-decoding (kernels/attention_decode.cu): the split kernel over chunks of each row's cache, then, when the
    /// positions were split, the combine that merges the partials in split order. <see cref="DecodeKernels"/> picks the
    /// split count; the partials live in grow-only scratch, so a steady decode loop allocates nothing. pageTable [B, P]
    /// (<see cref="IBackend.AttentionDecode"/>).
    /// </summary>
    public void AttentionDecode(Tensor q, Tensor keyCache, Tensor valueCache, Tensor pageTable, Tensor lengths,
        AttentionHeads heads, float scale, Tensor output)
    {
        CheckHeadDim(nameof(IBackend.AttentionDecode), heads);
        int batch = q.Shape[0], pages = keyCache.Shape[0], pageSize = keyCache.Shape[1], pagesPerRow = pageTable.Shape[1];
        int capacity = (int)Math.Min(int.MaxValue, (long)pagesPerRow * pageSize);
        if (batch == 0) return;
        // The split kernel reports table entries under one id and lengths under the next (attention_decode.cu).
        var errors = _rt.Errors;
        uint check = errors.RegisterPair(nameof(IBackend.AttentionDecode), IndexCheck.PageEntry, pages, IndexCheck.Length, capacity);
        nint record = errors.Record;
        var plan = DecodeKernels.For(heads, batch, capacity, _rt.GridStrideBlocks, P(keyCache) % 16 == 0 && P(valueCache) % 16 == 0);
        var storage = q.DType;
        string kernel = plan.Split(storage);
        int shared = plan.SharedBytes(heads.HeadDim);
        Shared(kernel, shared);
        nint partials = plan.Splits > 1 ? _scratch.Get(ScratchBuffers.Slot.DecodePartials, plan.PartialBytes(heads, batch)) : 0;
        var a = new KernelArgs();
        _rt.Launch(kernel, plan.SplitGrid(heads, batch), DecodeKernels.Threads, shared,
            ref a.Ptr(P(q)).Ptr(P(keyCache)).Ptr(P(valueCache)).Ptr(P(pageTable)).Ptr(P(lengths)).Ptr(P(output)).Ptr(partials)
                .Int(batch).Int(pagesPerRow).Int(pageSize).Int(heads.NumHeads).Int(heads.NumKvHeads).Int(heads.HeadDim).Float(scale)
                .Int(plan.Chunk).Int(pages).Ptr(record).UInt(check));
        if (plan.Splits == 1) return;
        var c = new KernelArgs();
        _rt.Launch(DecodeKernels.Combine(storage), DecodeKernels.CombineGrid(heads, batch), DecodeKernels.CombineThreads, 0,
            ref c.Ptr(partials).Ptr(P(lengths)).Ptr(P(output)).Int(batch).Int(capacity).Int(heads.NumHeads).Int(heads.HeadDim)
                .Int(plan.Splits).Int(plan.Chunk));
    }

    // ---------------------------------------------------------------- log-prob

    /// <summary>
    /// The tiling of a log-prob over <paramref name="rows"/> rows (see <see cref="LogProbTiling.Plan"/>), from the free
    /// memory at the backend's first log-prob. Read once and kept: the row block decides the GEMMs' shapes, and a
    /// cuBLAS result may depend on its M, so a tiling that followed the free memory from call to call could change the
    /// bits of a log-prob mid-run (and a resumed run's, which must match).
    /// </summary>
    public LogProbTiling PlanLogProb(int rows, int vocab, int width, DType storage)
    {
        if (_logProbFreeBytes < 0) _logProbFreeBytes = _rt.FreeMemoryBytes;
        return LogProbTiling.Plan(rows, vocab, width, storage, _logProbFreeBytes, _rt.LogitTileFloats, _rt.VocabChunk);
    }

    private long _logProbFreeBytes = -1;

    public void LogProbForward(Tensor hidden, Tensor weight, Tensor targets, float temperature, Tensor logProbs, Tensor entropy, Tensor logSumExp)
    {
        int rows = hidden.Shape[0], width = hidden.Shape[1], vocab = weight.Shape[0];
        if (rows == 0) return;
        var (record, check) = Check(nameof(IBackend.LogProbForward), IndexCheck.Target, vocab);
        var plan = PlanLogProb(rows, vocab, width, hidden.DType);
        int rowBlock = plan.RowBlock, chunk = plan.VocabChunk;
        nint stats = _scratch.Get(ScratchBuffers.Slot.Stats, 4L * rows * sizeof(float));
        nint m = stats, s = stats + rows * sizeof(float), u = s + rows * sizeof(float), target = u + rows * sizeof(float);
        nint tile = _scratch.Get(ScratchBuffers.Slot.Tile, (long)rowBlock * chunk * sizeof(float));
        float invT = 1f / temperature;
        var storage = hidden.DType;
        var logitTypes = new GemmTypes(storage, DType.Float32);
        var init = new KernelArgs();
        _rt.Launch("logprob_init", StrideGrid(rows), 256, 0, ref init.Ptr(m).Ptr(s).Ptr(u).Int(rows));
        for (int r0 = 0; r0 < rows; r0 += rowBlock)
        {
            int tileRows = Math.Min(rowBlock, rows - r0);
            for (int c0 = 0; c0 < vocab; c0 += chunk)
            {
                int cols = Math.Min(chunk, vocab - c0);
                // tile = invT * hidden[r0 .. r0 + tileRows] . W[c0 .. c0 + cols]^T, in fp32 whatever the storage
                _rt.Gemm(logitTypes, false, true, tileRows, cols, width, invT, Row(P(hidden), r0, width, storage), width, 0,
                    Row(P(weight), c0, width, storage), width, 0, 0f, tile, cols, 0, 1);
                var fold = new KernelArgs();
                _rt.Launch("logprob_fold", tileRows, _rt.RowThreads, 0,
                    ref fold.Ptr(tile).Int(cols).Int(tileRows).Int(cols).Int(c0).Int(r0).Ptr(P(targets)).Ptr(m).Ptr(s).Ptr(u).Ptr(target)
                        .Int(vocab).Ptr(record).UInt(check));
            }
        }
        var fin = new KernelArgs();
        _rt.Launch("logprob_finalize", StrideGrid(rows), 256, 0,
            ref fin.Ptr(m).Ptr(s).Ptr(u).Ptr(target).Ptr(P(logProbs)).Ptr(P(entropy)).Ptr(P(logSumExp)).Int(rows));
    }

    /// <remarks>
    /// Per tile: recompute the logits (fp32), turn them into dz in place, then dHidden += dz . W / T and dW += dz^T . hidden / T.
    /// cuBLAS takes A and B of one type, so with bf16 storage dz is bf16, written over the first half of each fp32 tile row
    /// (row pitch 2 x cols bf16 elements), and dHidden is accumulated over the vocabulary chunks in an fp32 scratch (a bf16
    /// running sum would lose the small chunks), converted to bf16 once at the end; dW is the fp32 parameter gradient in
    /// both cases.
    /// </remarks>
    public void LogProbBackward(Tensor dLogProbs, Tensor? dEntropy, Tensor hidden, Tensor weight, Tensor targets,
        float temperature, Tensor entropy, Tensor logSumExp, Tensor dHidden, Tensor dWeight)
    {
        int rows = hidden.Shape[0], width = hidden.Shape[1], vocab = weight.Shape[0];
        if (rows == 0 || width == 0) return;
        var (record, check) = Check(nameof(IBackend.LogProbBackward), IndexCheck.Target, vocab);
        var s = hidden.DType;
        bool fp32 = s == DType.Float32;
        var plan = PlanLogProb(rows, vocab, width, s);
        int rowBlock = plan.RowBlock, chunk = plan.VocabChunk;
        nint tile = _scratch.Get(ScratchBuffers.Slot.Tile, (long)rowBlock * chunk * sizeof(float));
        nint dHiddenAcc = fp32 ? P(dHidden) : _scratch.Get(ScratchBuffers.Slot.HiddenGradient, (long)rows * width * sizeof(float));
        FillFloats(dHiddenAcc, (long)rows * width, 0f);
        float invT = 1f / temperature;
        var logitTypes = new GemmTypes(s, DType.Float32);
        for (int r0 = 0; r0 < rows; r0 += rowBlock)
        {
            int tileRows = Math.Min(rowBlock, rows - r0);
            nint hiddenRows = Row(P(hidden), r0, width, s);
            nint dHiddenRows = Row(dHiddenAcc, r0, width, DType.Float32);
            for (int c0 = 0; c0 < vocab; c0 += chunk)
            {
                int cols = Math.Min(chunk, vocab - c0);
                int ldDz = fp32 ? cols : 2 * cols; // in storage elements: a bf16 dz row starts where its fp32 logits row did
                nint weightRows = Row(P(weight), c0, width, s);
                _rt.Gemm(logitTypes, false, true, tileRows, cols, width, invT, hiddenRows, width, 0, weightRows, width, 0, 0f, tile, cols, 0, 1);
                var grad = new KernelArgs();
                _rt.Launch(K("logprob_grad", s), tileRows, _rt.RowThreads, 0,
                    ref grad.Ptr(tile).Int(cols).Int(ldDz).Int(tileRows).Int(cols).Int(c0).Int(r0).Ptr(P(targets)).Ptr(P(dLogProbs))
                        .Ptr(P(dEntropy, true)).Ptr(P(entropy)).Ptr(P(logSumExp)).Int(vocab).Ptr(record).UInt(check));
                // dHidden[rows] += dz . W[chunk] / T ; dW[chunk] += dz^T . hidden[rows] / T, both accumulating in fp32
                _rt.Gemm(logitTypes, false, false, tileRows, width, cols, invT, tile, ldDz, 0, weightRows, width, 0, 1f, dHiddenRows, width, 0, 1);
                _rt.Gemm(logitTypes, true, false, cols, width, tileRows, invT, tile, ldDz, 0, hiddenRows, width, 0, 1f,
                    Row(P(dWeight), c0, width, DType.Float32), width, 0, 1);
            }
        }
        if (!fp32)
        {
            var a = new KernelArgs();
            _rt.Launch("convert_f32_bf16", StrideGrid((long)rows * width), 256, 0, ref a.Ptr(dHiddenAcc).Ptr(P(dHidden)).Long((long)rows * width));
        }
    }

    /// <summary>Fills <paramref name="count"/> floats at a raw device address.</summary>
    private void FillFloats(nint pointer, long count, float value)
    {
        if (count == 0) return;
        var a = new KernelArgs();
        _rt.Launch("fill_f32", StrideGrid(count), 256, 0, ref a.Ptr(pointer).Long(count).Float(value));
    }

    // ---------------------------------------------------------------- GRPO

    public void GrpoAdvantages(Tensor rewards, Segments groups, float epsilon, Tensor advantages)
    {
        if (groups.Count == 0) return;
        var a = new KernelArgs();
        _rt.Launch("grpo_advantages", StrideGrid(groups.Count, 64), 64, 0,
            ref a.Ptr(P(rewards)).Ptr(P(groups.DeviceOffsets)).Int(groups.Count).Float(epsilon).Ptr(P(advantages)));
    }

    public void BroadcastSegments(Tensor values, Segments segments, Tensor output)
    {
        if (segments.Count == 0 || segments.Total == 0) return;
        var a = new KernelArgs();
        _rt.Launch("broadcast_segments", (uint)Math.Min(segments.Count, _rt.GridStrideBlocks), 128, 0,
            ref a.Ptr(P(values)).Ptr(P(segments.DeviceOffsets)).Int(segments.Count).Ptr(P(output)));
    }

    public void PolicyLossForward(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor entropy,
        Tensor tokenWeights, Tensor? referenceLogProbs, PolicyLossOptions options, Tensor lossTerms)
    {
        int count = logProbs.Shape[0];
        var a = new KernelArgs();
        _rt.Launch("policy_loss_forward", 1, _rt.RowThreads, 0,
            ref a.Ptr(P(logProbs)).Ptr(P(oldLogProbs)).Ptr(P(advantages)).Ptr(P(entropy)).Ptr(P(tokenWeights))
                .Ptr(P(options.KlCoefficient != 0f ? referenceLogProbs : null, true))
                .Float(options.ClipLow).Float(options.ClipHigh).Float(options.EntropyCoefficient).Float(options.KlCoefficient)
                .Int(count).Ptr(P(lossTerms)));
    }

    public void PolicyLossBackward(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor tokenWeights,
        Tensor? referenceLogProbs, PolicyLossOptions options, Tensor dLogProbs, Tensor dEntropy)
    {
        int count = logProbs.Shape[0];
        if (count == 0) return;
        var a = new KernelArgs();
        _rt.Launch("policy_loss_backward", StrideGrid(count), 256, 0,
            ref a.Ptr(P(logProbs)).Ptr(P(oldLogProbs)).Ptr(P(advantages)).Ptr(P(tokenWeights))
                .Ptr(P(options.KlCoefficient != 0f ? referenceLogProbs : null, true))
                .Float(options.ClipLow).Float(options.ClipHigh).Float(options.EntropyCoefficient).Float(options.KlCoefficient)
                .Int(count).Ptr(P(dLogProbs)).Ptr(P(dEntropy)));
    }

    // ---------------------------------------------------------------- optimizer

    public void AdamWStep(IReadOnlyList<AdamWSlot> slots, AdamWOptions options, int step, float gradientScale)
    {
        // The device table: 8 longs per tensor (see struct AdamWTensor in kernels/adamw.cu), built in a reused host array.
        if (_adamWTable.Length < slots.Count * 8) _adamWTable = new long[Math.Max(8, slots.Count * 8)];
        var table = _adamWTable;
        int tensors = 0;
        long chunks = 0;
        for (int i = 0; i < slots.Count; i++)
        {
            var slot = slots[i];
            long n = slot.Parameter.ElementCount;
            if (n == 0) continue;
            int o = tensors * 8;
            table[o + 0] = P(slot.Parameter);
            table[o + 1] = P(slot.Gradient);
            table[o + 2] = P(slot.FirstMoment);
            table[o + 3] = P(slot.SecondMoment);
            table[o + 4] = n;
            table[o + 5] = chunks;
            table[o + 6] = slot.ApplyWeightDecay ? 1 : 0;
            table[o + 7] = slot.WorkingCopy is { } copy ? P(copy) : 0;
            chunks += (n + AdamWChunk - 1) / AdamWChunk;
            tensors++;
        }
        if (tensors == 0) return;
        nint device = _scratch.Get(ScratchBuffers.Slot.Table, (long)tensors * 8 * sizeof(long));
        fixed (long* host = table) _rt.CopyHostToDevice(host, device, (long)tensors * 8 * sizeof(long));
        // Scalars formed in double and rounded once, as torch does (see Cpu/AdamW.cs).
        float beta1 = (float)options.Beta1, beta2 = (float)options.Beta2, eps = (float)options.Epsilon;
        float decayFactor = (float)(1 - options.LearningRate * options.WeightDecay);
        float stepSize = (float)(options.LearningRate / (1 - Math.Pow(options.Beta1, step)));
        float bc2Sqrt = (float)Math.Sqrt(1 - Math.Pow(options.Beta2, step));
        var a = new KernelArgs();
        _rt.Launch("adamw_step", new Dim3((uint)chunks), 256, 0,
            ref a.Ptr(device).Int(tensors).Float(beta1).Float(beta2).Float((float)(1 - options.Beta1)).Float((float)(1 - options.Beta2))
                .Float(eps).Float(stepSize).Float(bc2Sqrt).Float(decayFactor).Float(gradientScale));
    }

    public float GlobalNorm(IReadOnlyList<Tensor> tensors)
    {
        // The device table: 3 longs per non-empty tensor (see struct SumsqTensor in kernels/reduce.cu). The host copy
        // grows once to the model's tensor count and is reused, so a step allocates nothing here.
        if (_normTable.Length < tensors.Count * 3) _normTable = new long[tensors.Count * 3];
        int count = 0;
        long chunks = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            long n = tensors[i].ElementCount;
            if (n == 0) continue;
            int o = count * 3;
            _normTable[o + 0] = P(tensors[i]);
            _normTable[o + 1] = n;
            _normTable[o + 2] = chunks;
            chunks += (n + SumsqChunk - 1) / SumsqChunk;
            count++;
        }
        if (count == 0) return 0f;
        long tableBytes = (long)count * 3 * sizeof(long);
        // Its own slot, so the norm's table and the AdamW table of the same step never share a buffer.
        nint device = _scratch.Get(ScratchBuffers.Slot.NormTable, tableBytes);
        fixed (long* host = _normTable) _rt.CopyHostToDevice(host, device, tableBytes);
        uint blocks = (uint)Math.Min(chunks, _rt.GridStrideBlocks);
        nint partials = _scratch.Get(ScratchBuffers.Slot.Partials, (blocks + 1L) * sizeof(double));
        nint result = partials + (nint)blocks * sizeof(double);
        var a = new KernelArgs();
        _rt.Launch("sumsq_multi", blocks, SumsqThreads, 0, ref a.Ptr(device).Int(count).Long(chunks).Ptr(partials));
        var f = new KernelArgs();
        _rt.Launch("sumsq_final", 1, 256, 0, ref f.Ptr(partials).Int((int)blocks).Ptr(result));
        double sum;
        _rt.CopyDeviceToHost(result, &sum, sizeof(double));
        return (float)Math.Sqrt(sum);
    }

    // ---------------------------------------------------------------- sampling

    public void Sample(Tensor logits, SamplingOptions options, ulong seed, ulong counter, Tensor? streams, Tensor tokens, Tensor logProbs, Tensor? truncatedMass)
    {
        int rows = logits.Shape[0], vocab = logits.Shape[1];
        if (rows == 0) return;
        bool filter = options.Temperature != 0f && ((options.TopK > 0 && options.TopK < vocab) || options.TopP < 1f);
        int shared = filter ? SampleSharedBytes : 0;
        string kernel = K("sample_rows", logits.DType);
        Shared(kernel, shared);
        // A power of two: the block scans the histograms' 2048 and 1024 buckets in equal runs per thread.
        int threads = vocab <= 1024 ? 32 : _rt.RowThreads;
        var a = new KernelArgs();
        _rt.Launch(kernel, rows, threads, shared,
            ref a.Ptr(P(logits)).Int(rows).Int(vocab).Float(options.Temperature).Float(options.TopP).Int(options.TopK)
                .ULong(seed).ULong(counter).Ptr(P(streams, true)).Ptr(P(tokens)).Ptr(P(logProbs)).Ptr(P(truncatedMass, true)));
    }

    /// <summary>The decode loop's stop rules and input advance (kernels/sampling_stop.cu): one thread per row.</summary>
    public void AdvanceDecode(Tensor sampled, Tensor? stopTokens, Tensor remaining, Tensor emitted, DecodeInputs? next)
    {
        int rows = sampled.Shape[0];
        int width = next?.PageTable.Shape[1] ?? 0;
        var (record, check) = next is null ? (0, 0u) : Check(nameof(IBackend.AdvanceDecode), IndexCheck.NextPage, width);
        var n = next.GetValueOrDefault();
        var a = new KernelArgs();
        _rt.Launch("decode_advance", (uint)((rows + 127) / 128), 128, 0,
            ref a.Ptr(P(sampled)).Ptr(P(stopTokens, true)).Int(stopTokens is null ? 0 : stopTokens.Shape[0]).Ptr(P(remaining)).Ptr(P(emitted)).Int(rows)
                .Int(next is null ? 0 : 1).Ptr(P(n.Tokens, true)).Ptr(P(n.Positions, true)).Ptr(P(n.Lengths, true)).Ptr(P(n.Streams, true))
                .Ptr(P(n.CacheRows, true)).Ptr(P(n.PageTable, true)).Int(width).Int(next is null ? 1 : n.PageSize).Int(n.SinkRow).Ptr(record).UInt(check));
    }

    public void Dispose() => _scratch.Dispose();
}
