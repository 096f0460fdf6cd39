using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace OR1.Native;

/// <summary>
/// Implements the argument checks of <see cref="IBackend"/> once for every backend: each public op
/// validates dtypes, shapes, owning backend and segment offsets, then calls its protected
/// <c>...Core</c> method, which may trust its arguments.
/// </summary>
public abstract class BackendBase : IBackend
{
    /// <inheritdoc />
    public abstract BackendKind Kind { get; }

    /// <inheritdoc />
    public abstract string Description { get; }

    /// <inheritdoc />
    public virtual IReadOnlyList<DType> StorageTypes { get; } = [DType.Float32];

    /// <inheritdoc />
    public abstract BackendFacts Facts();

    /// <summary>True once <see cref="Dispose()"/> ran.</summary>
    protected bool IsDisposed { get; private set; }

    // ---------------------------------------------------------------- identity, memory, sync

    /// <inheritdoc />
    public Tensor Allocate(DType dtype, TensorShape shape, string? name = null)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var buffer = AllocateBuffer(shape.ElementCount * dtype.SizeOf());
        Interlocked.Add(ref _allocatedBytes, buffer.SizeInBytes);
        buffer.Released = size => Interlocked.Add(ref _allocatedBytes, -size);
        return new Tensor(buffer, 0, dtype, shape, ownsBuffer: true, name);
    }

    private long _allocatedBytes;

    /// <inheritdoc />
    public long AllocatedBytes => Interlocked.Read(ref _allocatedBytes);

    /// <summary>Allocates zero-filled memory.</summary>
    protected abstract DeviceBuffer AllocateBuffer(long sizeInBytes);

    /// <inheritdoc />
    public void Upload<T>(ReadOnlySpan<T> source, Tensor destination) where T : unmanaged
    {
        var check = new OpCheck(nameof(Upload), this);
        check.Usable(destination, nameof(destination), DTypeInfo.Of<T>());
        check.Require(source.Length == destination.ElementCount, nameof(source),
            $"has {source.Length} elements, but the destination {destination.Describe()} has {destination.ElementCount}");
        // A byte span cannot exceed 2 GiB, and one tensor can (a 7B model's fp32 LM head is 2.2 GB): copy in pieces.
        int chunk = CopyChunkBytes / Unsafe.SizeOf<T>();
        for (int start = 0; start < source.Length; start += chunk)
            UploadCore(MemoryMarshal.AsBytes(source.Slice(start, Math.Min(chunk, source.Length - start))), destination, (long)start * Unsafe.SizeOf<T>());
    }

    /// <summary>Largest host-device copy issued at once (bytes): Upload and Download copy in pieces of this.</summary>
    private const int CopyChunkBytes = 1 << 30;

    /// <summary>Copies raw bytes into the tensor, starting <paramref name="byteOffset"/> bytes into it.</summary>
    protected abstract void UploadCore(ReadOnlySpan<byte> source, Tensor destination, long byteOffset);

    /// <inheritdoc />
    public void Download<T>(Tensor source, Span<T> destination) where T : unmanaged
    {
        var check = new OpCheck(nameof(Download), this);
        check.Usable(source, nameof(source), DTypeInfo.Of<T>());
        check.Require(destination.Length == source.ElementCount, nameof(destination),
            $"has room for {destination.Length} elements, but the source {source.Describe()} has {source.ElementCount}");
        int chunk = CopyChunkBytes / Unsafe.SizeOf<T>();
        for (int start = 0; start < destination.Length; start += chunk)
            DownloadCore(source, MemoryMarshal.AsBytes(destination.Slice(start, Math.Min(chunk, destination.Length - start))), (long)start * Unsafe.SizeOf<T>());
    }

    /// <summary>Copies the tensor's raw bytes from <paramref name="byteOffset"/> on to the host (after synchronising).</summary>
    protected abstract void DownloadCore(Tensor source, Span<byte> destination, long byteOffset);

    /// <inheritdoc />
    public abstract void Synchronize();

    // ---------------------------------------------------------------- elementwise and data movement

    /// <inheritdoc />
    public void Fill(Tensor x, float value)
    {
        new OpCheck(nameof(Fill), this).Storage(x, nameof(x));
        FillCore(x, value);
    }

    /// <inheritdoc />
    public void Copy(Tensor source, Tensor destination)
    {
        var check = new OpCheck(nameof(Copy), this);
        check.Usable(source, nameof(source), source?.DType ?? DType.Float32);
        check.Usable(destination, nameof(destination), source!.DType);
        check.Require(source.ElementCount == destination.ElementCount, nameof(destination),
            $"has {destination.ElementCount} elements (shape {destination.Shape}), expected {source.ElementCount} (shape {source.Shape})");
        CopyCore(source, destination);
    }

    /// <inheritdoc />
    public void Convert(Tensor source, Tensor destination)
    {
        var check = new OpCheck(nameof(Convert), this);
        check.Storage(source, nameof(source));
        check.Storage(destination, nameof(destination));
        check.Require(source.ElementCount == destination.ElementCount, nameof(destination),
            $"has {destination.ElementCount} elements (shape {destination.Shape}), expected {source.ElementCount} (shape {source.Shape})");
        if (source.DType == destination.DType) CopyCore(source, destination);
        else ConvertCore(source, destination);
    }

    /// <inheritdoc />
    public void Add(Tensor a, Tensor b, Tensor output)
    {
        var check = new OpCheck(nameof(Add), this);
        var s = check.Storage(a, nameof(a));
        check.SameShape(b, nameof(b), a, nameof(a), s);
        check.SameShape(output, nameof(output), a, nameof(a), s);
        AddCore(a, b, output);
    }

    /// <inheritdoc />
    public void Scale(Tensor x, float factor)
    {
        new OpCheck(nameof(Scale), this).Storage(x, nameof(x));
        ScaleCore(x, factor);
    }

    /// <inheritdoc />
    public void AddBias(Tensor x, Tensor bias)
    {
        var check = new OpCheck(nameof(AddBias), this);
        var s = check.Storage(x, nameof(x));
        var (_, d) = check.Matrix(x, nameof(x), s);
        check.Shaped(bias, nameof(bias), s, d);
        AddBiasCore(x, bias);
    }

    /// <inheritdoc />
    public void BiasBackward(Tensor dOutput, Tensor dBias)
    {
        var check = new OpCheck(nameof(BiasBackward), this);
        var s = check.Storage(dOutput, nameof(dOutput));
        var (_, d) = check.Matrix(dOutput, nameof(dOutput), s);
        check.Shaped(dBias, nameof(dBias), DType.Float32, d);
        BiasBackwardCore(dOutput, dBias);
    }

    /// <inheritdoc />
    public void GatherRows(Tensor source, Tensor rowIndices, Tensor destination)
    {
        var check = new OpCheck(nameof(GatherRows), this);
        var (_, d) = check.Matrix(source, nameof(source), source?.DType ?? DType.Float32);
        int n = check.Vector(rowIndices, nameof(rowIndices), DType.Int32);
        check.Shaped(destination, nameof(destination), source!.DType, n, d);
        GatherRowsCore(source, rowIndices, destination);
    }

    /// <inheritdoc />
    public void ScatterRows(Tensor source, Tensor rowIndices, Tensor destination)
    {
        var check = new OpCheck(nameof(ScatterRows), this);
        var (n, d) = check.Matrix(source, nameof(source), source?.DType ?? DType.Float32);
        check.Shaped(rowIndices, nameof(rowIndices), DType.Int32, n);
        var (_, dd) = check.Matrix(destination, nameof(destination), source!.DType);
        check.Require(dd == d, nameof(destination), $"has rows of {dd} elements, expected {d} (the rows of 'source')");
        ScatterRowsCore(source, rowIndices, destination);
    }

    /// <inheritdoc />
    public virtual KeyCacheLayout KeyCacheLayout => KeyCacheLayout.Rows;

    /// <inheritdoc />
    public void WriteKeyCache(Tensor keys, Tensor cacheRows, Tensor keyCache)
    {
        var check = new OpCheck(nameof(WriteKeyCache), this);
        var (n, width) = check.Matrix(keys, nameof(keys), keys?.DType ?? DType.Float32);
        check.Shaped(cacheRows, nameof(cacheRows), DType.Int32, n);
        check.Usable(keyCache, nameof(keyCache), keys!.DType);
        check.Require(keyCache.Rank == 3 && keyCache.Shape[2] == width, nameof(keyCache),
            $"has shape {keyCache.Shape}, expected [pages, pageSize, {width}] (the rows of 'keys')");
        WriteKeyCacheCore(keys, cacheRows, keyCache);
    }

    /// <summary>keys[i] into cache row cacheRows[i] of keyCache, in <see cref="KeyCacheLayout"/>; rows out of range are an
    /// ArgumentException naming 'cacheRows' where checkable.</summary>
    protected abstract void WriteKeyCacheCore(Tensor keys, Tensor cacheRows, Tensor keyCache);

    /// <summary>Sets every element (a storage dtype: the value rounded once).</summary>
    protected abstract void FillCore(Tensor x, float value);
    /// <summary>Copies elements of equal count and dtype.</summary>
    protected abstract void CopyCore(Tensor source, Tensor destination);
    /// <summary>Float32 to BFloat16 (round to nearest even) or back; only backends that store BFloat16 get here.</summary>
    protected virtual void ConvertCore(Tensor source, Tensor destination) =>
        throw new NotSupportedException($"the {Kind} backend has no BFloat16 storage");
    /// <summary>output = a + b.</summary>
    protected abstract void AddCore(Tensor a, Tensor b, Tensor output);
    /// <summary>x *= factor.</summary>
    protected abstract void ScaleCore(Tensor x, float factor);
    /// <summary>x[n, :] += bias.</summary>
    protected abstract void AddBiasCore(Tensor x, Tensor bias);
    /// <summary>dBias += column sums of dOutput.</summary>
    protected abstract void BiasBackwardCore(Tensor dOutput, Tensor dBias);
    /// <summary>destination[i] = source[rowIndices[i]]; indices out of range are an ArgumentException where checkable.</summary>
    protected abstract void GatherRowsCore(Tensor source, Tensor rowIndices, Tensor destination);
    /// <summary>destination[rowIndices[i]] = source[i].</summary>
    protected abstract void ScatterRowsCore(Tensor source, Tensor rowIndices, Tensor destination);

    // ---------------------------------------------------------------- GEMM

    /// <inheritdoc />
    public void MatMul(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f)
    {
        var check = new OpCheck(nameof(MatMul), this);
        var s = check.Storage(a, nameof(a));
        check.Usable(b, nameof(b), s);
        var cType = check.Storage(c, nameof(c));
        check.Require(cType == s || cType == DType.Float32, nameof(c), $"has dtype {cType}, expected {(s == DType.Float32
            ? "Float32 like 'a' and 'b' (a bf16 output needs bf16 inputs)"
            : $"{s} (the dtype of 'a' and 'b') or Float32 (accumulating a parameter gradient)")}");
        int rank = a.Rank;
        check.Require(rank is 2 or 3, nameof(a), $"has shape {a.Shape}, expected rank 2 [M, K] or rank 3 [batch, M, K]");
        check.Require(b.Rank == rank, nameof(b), $"has shape {b.Shape}, expected rank {rank} like 'a'");
        check.Require(c.Rank == rank, nameof(c), $"has shape {c.Shape}, expected rank {rank} like 'a'");
        int batch = rank == 3 ? a.Shape[0] : 1;
        if (rank == 3)
        {
            check.Require(b.Shape[0] == batch, nameof(b), $"has batch {b.Shape[0]} (shape {b.Shape}), expected {batch} like 'a'");
            check.Require(c.Shape[0] == batch, nameof(c), $"has batch {c.Shape[0]} (shape {c.Shape}), expected {batch} like 'a'");
        }
        int m = transposeA ? a.Shape[-1] : a.Shape[-2];
        int k = transposeA ? a.Shape[-2] : a.Shape[-1];
        int kb = transposeB ? b.Shape[-1] : b.Shape[-2];
        int n = transposeB ? b.Shape[-2] : b.Shape[-1];
        check.Require(kb == k, nameof(b),
            $"has shape {b.Shape}{(transposeB ? " (transposed)" : "")}, whose inner dimension {kb} does not match {k} of 'a' {a.Shape}{(transposeA ? " (transposed)" : "")}");
        check.Require(c.Shape[-2] == m && c.Shape[-1] == n, nameof(c), $"has shape {c.Shape}, expected [{(rank == 3 ? batch + ", " : "")}{m}, {n}]");
        check.Finite(alpha, nameof(alpha));
        check.Finite(beta, nameof(beta));
        check.NoOverlap(a, nameof(a), c, nameof(c));
        check.NoOverlap(b, nameof(b), c, nameof(c));
        MatMulCore(a, transposeA, b, transposeB, c, alpha, beta, batch, m, n, k);
    }

    /// <summary>The validated GEMM with its sizes.</summary>
    protected abstract void MatMulCore(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c,
        float alpha, float beta, int batch, int m, int n, int k);

    // ---------------------------------------------------------------- embedding

    /// <inheritdoc />
    public void EmbeddingForward(Tensor tokenIds, Tensor table, Tensor output)
    {
        var check = new OpCheck(nameof(EmbeddingForward), this);
        int n = check.Vector(tokenIds, nameof(tokenIds), DType.Int32);
        var s = check.Storage(table, nameof(table));
        var (_, d) = check.Matrix(table, nameof(table), s);
        check.Shaped(output, nameof(output), s, n, d);
        EmbeddingForwardCore(tokenIds, table, output);
    }

    /// <inheritdoc />
    public void EmbeddingBackward(Tensor tokenIds, Tensor dOutput, Tensor dTable)
    {
        var check = new OpCheck(nameof(EmbeddingBackward), this);
        int n = check.Vector(tokenIds, nameof(tokenIds), DType.Int32);
        var (_, d) = check.Matrix(dTable, nameof(dTable));
        var s = check.Storage(dOutput, nameof(dOutput));
        check.Shaped(dOutput, nameof(dOutput), s, n, d);
        EmbeddingBackwardCore(tokenIds, dOutput, dTable);
    }

    /// <summary>Row gather from the table.</summary>
    protected abstract void EmbeddingForwardCore(Tensor tokenIds, Tensor table, Tensor output);
    /// <summary>Deterministic scatter-add into dTable.</summary>
    protected abstract void EmbeddingBackwardCore(Tensor tokenIds, Tensor dOutput, Tensor dTable);

    // ---------------------------------------------------------------- RMSNorm

    /// <inheritdoc />
    public void RmsNormForward(Tensor x, Tensor weight, float eps, Tensor output, Tensor invRms)
    {
        var check = new OpCheck(nameof(RmsNormForward), this);
        var s = check.Storage(x, nameof(x));
        var (n, d) = check.Matrix(x, nameof(x), s);
        check.Shaped(weight, nameof(weight), s, d);
        check.Shaped(output, nameof(output), s, n, d);
        check.Shaped(invRms, nameof(invRms), DType.Float32, n);
        check.Require(float.IsFinite(eps) && eps > 0, nameof(eps), $"is {eps}, expected a positive finite value");
        RmsNormForwardCore(x, weight, eps, output, invRms);
    }

    /// <inheritdoc />
    public void RmsNormBackward(Tensor dOutput, Tensor x, Tensor weight, Tensor invRms, Tensor dx, Tensor dWeight)
    {
        var check = new OpCheck(nameof(RmsNormBackward), this);
        var s = check.Storage(x, nameof(x));
        var (n, d) = check.Matrix(x, nameof(x), s);
        check.Shaped(dOutput, nameof(dOutput), s, n, d);
        check.Shaped(weight, nameof(weight), s, d);
        check.Shaped(invRms, nameof(invRms), DType.Float32, n);
        check.Shaped(dx, nameof(dx), s, n, d);
        check.Shaped(dWeight, nameof(dWeight), DType.Float32, d);
        RmsNormBackwardCore(dOutput, x, weight, invRms, dx, dWeight);
    }

    /// <summary>Validated RMSNorm forward.</summary>
    protected abstract void RmsNormForwardCore(Tensor x, Tensor weight, float eps, Tensor output, Tensor invRms);
    /// <summary>Validated RMSNorm backward.</summary>
    protected abstract void RmsNormBackwardCore(Tensor dOutput, Tensor x, Tensor weight, Tensor invRms, Tensor dx, Tensor dWeight);

    // ---------------------------------------------------------------- rotary embedding

    /// <inheritdoc />
    public void RopeForward(Tensor x, Tensor positions, int numHeads, int headDim, float theta, Tensor output)
    {
        CheckRope(nameof(RopeForward), x, nameof(x), positions, numHeads, headDim, theta, output, nameof(output));
        RopeCore(x, positions, numHeads, headDim, theta, output, inverse: false);
    }

    /// <inheritdoc />
    public void RopeBackward(Tensor dOutput, Tensor positions, int numHeads, int headDim, float theta, Tensor dx)
    {
        CheckRope(nameof(RopeBackward), dOutput, nameof(dOutput), positions, numHeads, headDim, theta, dx, nameof(dx));
        RopeCore(dOutput, positions, numHeads, headDim, theta, dx, inverse: true);
    }

    private void CheckRope(string op, Tensor x, string xName, Tensor positions, int numHeads, int headDim, float theta, Tensor output, string outputName)
    {
        var check = new OpCheck(op, this);
        check.Positive(numHeads, nameof(numHeads));
        check.Positive(headDim, nameof(headDim));
        check.Require(headDim % 2 == 0, nameof(headDim), $"is {headDim}, expected an even head dimension (rotate_half pairs i with i + headDim/2)");
        check.Require(float.IsFinite(theta) && theta > 1f, nameof(theta), $"is {theta}, expected a finite base greater than 1");
        var s = check.Storage(x, xName);
        var (n, width) = check.Matrix(x, xName, s);
        check.Require(width == numHeads * headDim, xName, $"has shape {x.Shape}, expected [{n}, {numHeads * headDim}] (numHeads {numHeads} x headDim {headDim})");
        check.Shaped(positions, nameof(positions), DType.Int32, n);
        check.SameShape(output, outputName, x, xName, s);
    }

    /// <summary>Rotation by +angle (forward) or -angle (backward); output may alias input.</summary>
    protected abstract void RopeCore(Tensor input, Tensor positions, int numHeads, int headDim, float theta, Tensor output, bool inverse);

    // ---------------------------------------------------------------- attention

    /// <inheritdoc />
    public void AttentionForward(Tensor q, Tensor k, Tensor v, Segments sequences, AttentionHeads heads, float scale,
        Tensor output, Tensor logSumExp)
    {
        var check = new OpCheck(nameof(AttentionForward), this);
        int n = CheckAttentionInputs(check, q, k, v, heads, scale);
        check.Segments(sequences, nameof(sequences), n, "the number of rows of 'q'");
        check.SameShape(output, nameof(output), q, nameof(q), q.DType);
        check.Shaped(logSumExp, nameof(logSumExp), DType.Float32, n, heads.NumHeads);
        check.NoOverlap(q, nameof(q), output, nameof(output));
        AttentionForwardCore(q, k, v, sequences, heads, scale, output, logSumExp);
    }

    /// <inheritdoc />
    public void AttentionBackward(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
        Segments sequences, AttentionHeads heads, float scale, Tensor dq, Tensor dk, Tensor dv)
    {
        var check = new OpCheck(nameof(AttentionBackward), this);
        int n = CheckAttentionInputs(check, q, k, v, heads, scale);
        check.Segments(sequences, nameof(sequences), n, "the number of rows of 'q'");
        var s = q.DType;
        check.SameShape(dOutput, nameof(dOutput), q, nameof(q), s);
        check.SameShape(output, nameof(output), q, nameof(q), s);
        check.Shaped(logSumExp, nameof(logSumExp), DType.Float32, n, heads.NumHeads);
        check.SameShape(dq, nameof(dq), q, nameof(q), s);
        check.SameShape(dk, nameof(dk), k, nameof(k), s);
        check.SameShape(dv, nameof(dv), v, nameof(v), s);
        AttentionBackwardCore(dOutput, q, k, v, output, logSumExp, sequences, heads, scale, dq, dk, dv);
    }

    /// <inheritdoc />
    public void AttentionDecode(Tensor q, Tensor keyCache, Tensor valueCache, Tensor pageTable, Tensor lengths,
        AttentionHeads heads, float scale, Tensor output)
    {
        var check = new OpCheck(nameof(AttentionDecode), this);
        CheckHeads(check, heads, scale);
        var s = check.Storage(q, nameof(q));
        var (b, qWidth) = check.Matrix(q, nameof(q), s);
        check.Require(qWidth == heads.QueryWidth, nameof(q), $"has shape {q.Shape}, expected [{b}, {heads.QueryWidth}] (NumHeads x HeadDim)");
        check.Usable(keyCache, nameof(keyCache), s);
        check.Require(keyCache.Rank == 3 && keyCache.Shape[2] == heads.KvWidth, nameof(keyCache),
            $"has shape {keyCache.Shape}, expected [pages, pageSize, {heads.KvWidth}] (NumKvHeads x HeadDim)");
        check.SameShape(valueCache, nameof(valueCache), keyCache, nameof(keyCache), s);
        check.Usable(pageTable, nameof(pageTable), DType.Int32);
        check.Require((pageTable.Rank == 1 || pageTable.Rank == 2) && pageTable.Shape[0] == b && (pageTable.Rank == 1 || pageTable.Shape[1] >= 1),
            nameof(pageTable), $"has shape {pageTable.Shape}, expected [{b}, pages per row] (or [{b}]: one page, a contiguous slot, per row)");
        check.Shaped(lengths, nameof(lengths), DType.Int32, b);
        check.SameShape(output, nameof(output), q, nameof(q), s);
        AttentionDecodeCore(q, keyCache, valueCache, pageTable.Rank == 1 ? pageTable.Reshape(b, 1) : pageTable, lengths, heads, scale, output);
    }

    private static void CheckHeads(OpCheck check, AttentionHeads heads, float scale)
    {
        check.Positive(heads.NumHeads, "heads.NumHeads");
        check.Positive(heads.NumKvHeads, "heads.NumKvHeads");
        check.Positive(heads.HeadDim, "heads.HeadDim");
        check.Require(heads.NumHeads % heads.NumKvHeads == 0, "heads",
            $"has {heads.NumHeads} query heads and {heads.NumKvHeads} kv heads; kv heads must divide query heads");
        check.Require(float.IsFinite(scale) && scale > 0, nameof(scale), $"is {scale}, expected a positive finite value");
    }

    private static int CheckAttentionInputs(OpCheck check, Tensor q, Tensor k, Tensor v, AttentionHeads heads, float scale)
    {
        CheckHeads(check, heads, scale);
        var s = check.Storage(q, nameof(q));
        var (n, qWidth) = check.Matrix(q, nameof(q), s);
        check.Require(qWidth == heads.QueryWidth, nameof(q), $"has shape {q.Shape}, expected [{n}, {heads.QueryWidth}] (NumHeads {heads.NumHeads} x HeadDim {heads.HeadDim})");
        check.Shaped(k, nameof(k), s, n, heads.KvWidth);
        check.Shaped(v, nameof(v), s, n, heads.KvWidth);
        return n;
    }

    /// <summary>Validated attention forward.</summary>
    protected abstract void AttentionForwardCore(Tensor q, Tensor k, Tensor v, Segments sequences, AttentionHeads heads, float scale,
        Tensor output, Tensor logSumExp);
    /// <summary>Validated attention backward.</summary>
    protected abstract void AttentionBackwardCore(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
        Segments sequences, AttentionHeads heads, float scale, Tensor dq, Tensor dk, Tensor dv);
    /// <summary>Validated decode attention, pageTable [B, P]; page and length values are the kernel's to check where it can.</summary>
    protected abstract void AttentionDecodeCore(Tensor q, Tensor keyCache, Tensor valueCache, Tensor pageTable, Tensor lengths,
        AttentionHeads heads, float scale, Tensor output);

    // ---------------------------------------------------------------- SwiGLU

    /// <inheritdoc />
    public void SwiGluForward(Tensor gate, Tensor up, Tensor output)
    {
        var check = new OpCheck(nameof(SwiGluForward), this);
        var s = check.Storage(gate, nameof(gate));
        check.Matrix(gate, nameof(gate), s);
        check.SameShape(up, nameof(up), gate, nameof(gate), s);
        check.SameShape(output, nameof(output), gate, nameof(gate), s);
        SwiGluForwardCore(gate, up, output);
    }

    /// <inheritdoc />
    public void SwiGluBackward(Tensor dOutput, Tensor gate, Tensor up, Tensor dGate, Tensor dUp)
    {
        var check = new OpCheck(nameof(SwiGluBackward), this);
        var s = check.Storage(gate, nameof(gate));
        check.Matrix(gate, nameof(gate), s);
        check.SameShape(up, nameof(up), gate, nameof(gate), s);
        check.SameShape(dOutput, nameof(dOutput), gate, nameof(gate), s);
        check.SameShape(dGate, nameof(dGate), gate, nameof(gate), s);
        check.SameShape(dUp, nameof(dUp), gate, nameof(gate), s);
        SwiGluBackwardCore(dOutput, gate, up, dGate, dUp);
    }

    /// <summary>Validated SwiGLU forward.</summary>
    protected abstract void SwiGluForwardCore(Tensor gate, Tensor up, Tensor output);
    /// <summary>Validated SwiGLU backward.</summary>
    protected abstract void SwiGluBackwardCore(Tensor dOutput, Tensor gate, Tensor up, Tensor dGate, Tensor dUp);

    // ---------------------------------------------------------------- log-prob + entropy

    /// <inheritdoc />
    public void LogProbForward(Tensor hidden, Tensor weight, Tensor targets, float temperature,
        Tensor logProbs, Tensor entropy, Tensor logSumExp)
    {
        var check = new OpCheck(nameof(LogProbForward), this);
        var (n, _) = CheckLogProbInputs(check, hidden, weight, targets, temperature);
        check.Shaped(logProbs, nameof(logProbs), DType.Float32, n);
        check.Shaped(entropy, nameof(entropy), DType.Float32, n);
        check.Shaped(logSumExp, nameof(logSumExp), DType.Float32, n);
        LogProbForwardCore(hidden, weight, targets, temperature, logProbs, entropy, logSumExp);
    }

    /// <inheritdoc />
    public void LogProbBackward(Tensor dLogProbs, Tensor? dEntropy, Tensor hidden, Tensor weight, Tensor targets,
        float temperature, Tensor entropy, Tensor logSumExp, Tensor dHidden, Tensor dWeight)
    {
        var check = new OpCheck(nameof(LogProbBackward), this);
        var (n, _) = CheckLogProbInputs(check, hidden, weight, targets, temperature);
        check.Shaped(dLogProbs, nameof(dLogProbs), DType.Float32, n);
        if (dEntropy is not null) check.Shaped(dEntropy, nameof(dEntropy), DType.Float32, n);
        check.Shaped(entropy, nameof(entropy), DType.Float32, n);
        check.Shaped(logSumExp, nameof(logSumExp), DType.Float32, n);
        check.SameShape(dHidden, nameof(dHidden), hidden, nameof(hidden), hidden.DType);
        check.SameShape(dWeight, nameof(dWeight), weight, nameof(weight), DType.Float32);
        check.NoOverlap(hidden, nameof(hidden), dHidden, nameof(dHidden));
        LogProbBackwardCore(dLogProbs, dEntropy, hidden, weight, targets, temperature, entropy, logSumExp, dHidden, dWeight);
    }

    private static (int N, int V) CheckLogProbInputs(OpCheck check, Tensor hidden, Tensor weight, Tensor targets, float temperature)
    {
        var s = check.Storage(hidden, nameof(hidden));
        var (n, d) = check.Matrix(hidden, nameof(hidden), s);
        var (v, wd) = check.Matrix(weight, nameof(weight), s);
        check.Require(wd == d, nameof(weight), $"has shape {weight.Shape}, expected [vocab, {d}] (the width of 'hidden')");
        check.Require(v > 0, nameof(weight), "has an empty vocabulary");
        check.Shaped(targets, nameof(targets), DType.Int32, n);
        check.Require(float.IsFinite(temperature) && temperature > 0, nameof(temperature), $"is {temperature}, expected a positive finite value");
        return (n, v);
    }

    /// <summary>Validated log-prob forward; target ids out of range are the kernel's to report where it can.</summary>
    /// <inheritdoc />
    public abstract LogProbTiling PlanLogProb(int rows, int vocab, int width, DType storage);

    protected abstract void LogProbForwardCore(Tensor hidden, Tensor weight, Tensor targets, float temperature,
        Tensor logProbs, Tensor entropy, Tensor logSumExp);
    /// <summary>Validated log-prob backward.</summary>
    protected abstract void LogProbBackwardCore(Tensor dLogProbs, Tensor? dEntropy, Tensor hidden, Tensor weight, Tensor targets,
        float temperature, Tensor entropy, Tensor logSumExp, Tensor dHidden, Tensor dWeight);

    // ---------------------------------------------------------------- GRPO

    /// <inheritdoc />
    public void GrpoAdvantages(Tensor rewards, Segments groups, float epsilon, Tensor advantages)
    {
        var check = new OpCheck(nameof(GrpoAdvantages), this);
        int r = check.Vector(rewards, nameof(rewards));
        check.Segments(groups, nameof(groups), r, "the number of rewards");
        check.Shaped(advantages, nameof(advantages), DType.Float32, r);
        check.Require(float.IsFinite(epsilon) && epsilon >= 0, nameof(epsilon), $"is {epsilon}, expected a finite non-negative value");
        GrpoAdvantagesCore(rewards, groups, epsilon, advantages);
    }

    /// <inheritdoc />
    public void BroadcastSegments(Tensor values, Segments segments, Tensor output)
    {
        var check = new OpCheck(nameof(BroadcastSegments), this);
        int s = check.Vector(values, nameof(values));
        int t = check.Vector(output, nameof(output));
        check.Segments(segments, nameof(segments), t, "the length of 'output'");
        check.Require(segments.Count == s, nameof(values), $"has {s} values, expected one per segment ({segments.Count})");
        BroadcastSegmentsCore(values, segments, output);
    }

    /// <inheritdoc />
    public void PolicyLossForward(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor entropy,
        Tensor tokenWeights, Tensor? referenceLogProbs, PolicyLossOptions options, Tensor lossTerms)
    {
        var check = new OpCheck(nameof(PolicyLossForward), this);
        int t = CheckPolicyLossInputs(check, logProbs, oldLogProbs, advantages, tokenWeights, referenceLogProbs, options);
        check.Shaped(entropy, nameof(entropy), DType.Float32, t);
        check.Shaped(lossTerms, nameof(lossTerms), DType.Float32, PolicyLossTerms.Count);
        PolicyLossForwardCore(logProbs, oldLogProbs, advantages, entropy, tokenWeights, referenceLogProbs, options, lossTerms);
    }

    /// <inheritdoc />
    public void PolicyLossBackward(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor tokenWeights,
        Tensor? referenceLogProbs, PolicyLossOptions options, Tensor dLogProbs, Tensor dEntropy)
    {
        var check = new OpCheck(nameof(PolicyLossBackward), this);
        int t = CheckPolicyLossInputs(check, logProbs, oldLogProbs, advantages, tokenWeights, referenceLogProbs, options);
        check.Shaped(dLogProbs, nameof(dLogProbs), DType.Float32, t);
        check.Shaped(dEntropy, nameof(dEntropy), DType.Float32, t);
        PolicyLossBackwardCore(logProbs, oldLogProbs, advantages, tokenWeights, referenceLogProbs, options, dLogProbs, dEntropy);
    }

    private static int CheckPolicyLossInputs(OpCheck check, Tensor logProbs, Tensor oldLogProbs, Tensor advantages,
        Tensor tokenWeights, Tensor? referenceLogProbs, PolicyLossOptions options)
    {
        int t = check.Vector(logProbs, nameof(logProbs));
        check.Shaped(oldLogProbs, nameof(oldLogProbs), DType.Float32, t);
        check.Shaped(advantages, nameof(advantages), DType.Float32, t);
        check.Shaped(tokenWeights, nameof(tokenWeights), DType.Float32, t);
        check.Require(float.IsFinite(options.ClipLow) && options.ClipLow >= 0 && options.ClipLow < 1, "options.ClipLow",
            $"is {options.ClipLow}, expected a value in [0, 1)");
        check.Require(float.IsFinite(options.ClipHigh) && options.ClipHigh >= 0, "options.ClipHigh",
            $"is {options.ClipHigh}, expected a finite non-negative value");
        check.Finite(options.EntropyCoefficient, "options.EntropyCoefficient");
        check.Finite(options.KlCoefficient, "options.KlCoefficient");
        if (options.KlCoefficient != 0f)
        {
            check.Require(referenceLogProbs is not null, nameof(referenceLogProbs), "is null, but the KL coefficient is non-zero");
            check.Shaped(referenceLogProbs, nameof(referenceLogProbs), DType.Float32, t);
        }
        return t;
    }

    /// <summary>Validated advantages.</summary>
    protected abstract void GrpoAdvantagesCore(Tensor rewards, Segments groups, float epsilon, Tensor advantages);
    /// <summary>Validated per-segment broadcast.</summary>
    protected abstract void BroadcastSegmentsCore(Tensor values, Segments segments, Tensor output);
    /// <summary>Validated policy loss forward.</summary>
    protected abstract void PolicyLossForwardCore(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor entropy,
        Tensor tokenWeights, Tensor? referenceLogProbs, PolicyLossOptions options, Tensor lossTerms);
    /// <summary>Validated policy loss backward.</summary>
    protected abstract void PolicyLossBackwardCore(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor tokenWeights,
        Tensor? referenceLogProbs, PolicyLossOptions options, Tensor dLogProbs, Tensor dEntropy);

    // ---------------------------------------------------------------- optimizer

    /// <inheritdoc />
    public void AdamWStep(IReadOnlyList<AdamWSlot> slots, AdamWOptions options, int step, float gradientScale)
    {
        ArgumentNullException.ThrowIfNull(slots);
        var check = new OpCheck(nameof(AdamWStep), this);
        for (int i = 0; i < slots.Count; i++)
        {
            var slot = slots[i];
            string label = $"slots[{i}]{(slot.Parameter?.Name is { } name ? $" ({name})" : "")}";
            check.Usable(slot.Parameter, label + ".Parameter", DType.Float32);
            check.SameShape(slot.Gradient, label + ".Gradient", slot.Parameter!, label + ".Parameter");
            check.SameShape(slot.FirstMoment, label + ".FirstMoment", slot.Parameter!, label + ".Parameter");
            check.SameShape(slot.SecondMoment, label + ".SecondMoment", slot.Parameter!, label + ".Parameter");
            if (slot.WorkingCopy is not null)
            {
                check.Storage(slot.WorkingCopy, label + ".WorkingCopy");
                check.SameShape(slot.WorkingCopy, label + ".WorkingCopy", slot.Parameter!, label + ".Parameter", DType.BFloat16);
            }
        }
        check.Require(double.IsFinite(options.LearningRate) && options.LearningRate >= 0, "options.LearningRate", $"is {options.LearningRate}, expected a finite non-negative value");
        check.Require(options.Beta1 is >= 0 and < 1, "options.Beta1", $"is {options.Beta1}, expected a value in [0, 1)");
        check.Require(options.Beta2 is >= 0 and < 1, "options.Beta2", $"is {options.Beta2}, expected a value in [0, 1)");
        check.Require(double.IsFinite(options.Epsilon) && options.Epsilon > 0, "options.Epsilon", $"is {options.Epsilon}, expected a positive finite value");
        check.Require(double.IsFinite(options.WeightDecay) && options.WeightDecay >= 0, "options.WeightDecay", $"is {options.WeightDecay}, expected a finite non-negative value");
        check.Positive(step, nameof(step));
        check.Require(float.IsFinite(gradientScale), nameof(gradientScale), $"is {gradientScale}, expected a finite value");
        AdamWStepCore(slots, options, step, gradientScale);
    }

    /// <inheritdoc />
    public float GlobalNorm(IReadOnlyList<Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var check = new OpCheck(nameof(GlobalNorm), this);
        for (int i = 0; i < tensors.Count; i++) check.Usable(tensors[i], $"tensors[{i}]", DType.Float32);
        return GlobalNormCore(tensors);
    }

    /// <summary>Validated AdamW step.</summary>
    protected abstract void AdamWStepCore(IReadOnlyList<AdamWSlot> slots, AdamWOptions options, int step, float gradientScale);
    /// <summary>Validated global norm.</summary>
    protected abstract float GlobalNormCore(IReadOnlyList<Tensor> tensors);

    // ---------------------------------------------------------------- sampling

    /// <inheritdoc />
    public void Sample(Tensor logits, SamplingOptions options, ulong seed, ulong counter, Tensor tokens, Tensor logProbs) =>
        CheckAndSample(logits, options, seed, counter, null, tokens, logProbs, null);

    /// <inheritdoc />
    public void Sample(Tensor logits, SamplingOptions options, ulong seed, Tensor streams, Tensor tokens, Tensor logProbs, Tensor? truncatedMass = null)
    {
        ArgumentNullException.ThrowIfNull(streams);
        CheckAndSample(logits, options, seed, 0, streams, tokens, logProbs, truncatedMass);
    }

    private void CheckAndSample(Tensor logits, SamplingOptions options, ulong seed, ulong counter, Tensor? streams, Tensor tokens, Tensor logProbs,
        Tensor? truncatedMass)
    {
        var check = new OpCheck(nameof(Sample), this);
        var (b, v) = check.Matrix(logits, nameof(logits), check.Storage(logits, nameof(logits)));
        check.Require(v > 0, nameof(logits), "has an empty vocabulary");
        check.Shaped(tokens, nameof(tokens), DType.Int32, b);
        check.Shaped(logProbs, nameof(logProbs), DType.Float32, b);
        check.Require(float.IsFinite(options.Temperature) && options.Temperature >= 0, "options.Temperature", $"is {options.Temperature}, expected a finite non-negative value (0 = greedy)");
        check.Require(options.TopP > 0 && options.TopP <= 1, "options.TopP", $"is {options.TopP}, expected a value in (0, 1]");
        check.Require(options.TopK >= 0, "options.TopK", $"is {options.TopK}, expected 0 (off) or a positive count");
        if (streams is not null) check.Shaped(streams, nameof(streams), DType.Int32, b, 2);
        if (truncatedMass is not null) check.Shaped(truncatedMass, nameof(truncatedMass), DType.Float32, b);
        SampleCore(logits, options, seed, counter, streams, tokens, logProbs, truncatedMass);
    }

    /// <inheritdoc />
    public void AdvanceDecode(Tensor sampled, Tensor? stopTokens, Tensor remaining, Tensor emitted, DecodeInputs? next = null)
    {
        var check = new OpCheck(nameof(AdvanceDecode), this);
        int rows = check.Vector(sampled, nameof(sampled), DType.Int32);
        if (stopTokens is not null) check.Vector(stopTokens, nameof(stopTokens), DType.Int32);
        check.Shaped(remaining, nameof(remaining), DType.Int32, rows);
        check.Shaped(emitted, nameof(emitted), DType.Int32, rows);
        if (next is { } n)
        {
            check.Shaped(n.Tokens, "next.Tokens", DType.Int32, rows);
            check.Shaped(n.Positions, "next.Positions", DType.Int32, rows);
            check.Shaped(n.Lengths, "next.Lengths", DType.Int32, rows);
            check.Shaped(n.Streams, "next.Streams", DType.Int32, rows, 2);
            check.Shaped(n.CacheRows, "next.CacheRows", DType.Int32, rows);
            var (tableRows, _) = check.Matrix(n.PageTable, "next.PageTable", DType.Int32);
            check.Require(tableRows == rows, "next.PageTable", $"has {tableRows} rows, expected {rows} (one per row of 'sampled')");
            check.Require(n.PageSize >= 1, "next.PageSize", $"is {n.PageSize}, expected at least 1");
            check.Require(n.SinkRow >= 0, "next.SinkRow", $"is {n.SinkRow}, expected a cache row (non-negative)");
        }
        if (rows > 0) AdvanceDecodeCore(sampled, stopTokens, remaining, emitted, next);
    }

    /// <summary>The decode loop's stop rules and input advance (<see cref="AdvanceDecode"/>); shapes checked, rows &gt; 0.</summary>
    protected abstract void AdvanceDecodeCore(Tensor sampled, Tensor? stopTokens, Tensor remaining, Tensor emitted, DecodeInputs? next);

    /// <inheritdoc />
    public virtual IDisposable FreezeWeights(IReadOnlyList<Tensor> weights, long maxBytes = 1L << 31)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return NothingFrozen.Instance;
    }

    /// <inheritdoc />
    public virtual long? FreeMemoryBytes
    {
        get
        {
            var gc = GC.GetGCMemoryInfo();
            return gc.TotalAvailableMemoryBytes > 0 ? Math.Max(0, gc.TotalAvailableMemoryBytes - gc.MemoryLoadBytes) : null;
        }
    }

    /// <inheritdoc />
    public virtual IDeviceGraph? CaptureGraph(Action work)
    {
        ArgumentNullException.ThrowIfNull(work);
        return null;
    }

    /// <summary>The scope of a backend that prepares nothing.</summary>
    private sealed class NothingFrozen : IDisposable
    {
        public static readonly NothingFrozen Instance = new();
        public void Dispose() { }
    }

    /// <summary>
    /// Validated sampling. Row b's uniform is CounterRng's hash of (seed, counter, b), or of (seed, streams[b, 1],
    /// streams[b, 0]) when streams is given.
    /// </summary>
    protected abstract void SampleCore(Tensor logits, SamplingOptions options, ulong seed, ulong counter, Tensor? streams, Tensor tokens, Tensor logProbs,
        Tensor? truncatedMass);

    // ---------------------------------------------------------------- lifetime

    /// <inheritdoc />
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases backend resources.</summary>
    protected virtual void Dispose(bool disposing) { }
}
