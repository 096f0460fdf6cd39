namespace OR1.Native;

/// <summary>
/// How a backend walks the log-prob of <c>Rows</c> hidden states against a <c>Vocab</c>-row LM head without the
/// [rows x vocab] logits: tiles of <see cref="RowBlock"/> rows by <see cref="VocabChunk"/> vocabulary columns, and
/// the scratch that takes at its peak (the logit tile, the per-row statistics, and in backward with bf16 storage the
/// fp32 d-hidden accumulator). Reported in the trainer's metrics, so a run states what it chose.
/// </summary>
public readonly record struct LogProbTiling(int Rows, int Vocab, int RowBlock, int VocabChunk, long ScratchBytes)
{
    /// <summary>Bytes of the fp32 logits an unfused LM head + log-softmax would materialise.</summary>
    public long UnfusedLogitBytes => (long)Rows * Vocab * sizeof(float);

    /// <summary>The share of free device memory one logit tile may take: the rest is the model's, the optimizer's and activations'.</summary>
    public const int FreeMemoryShare = 16;

    /// <summary>
    /// The kernel backends' plan: vocabulary chunks of at most <paramref name="maxChunk"/> columns (cuBLAS is at
    /// full rate from a few thousand columns on), and as many rows per tile as fit in the smaller of
    /// <paramref name="maxTileFloats"/> and 1/<see cref="FreeMemoryShare"/> of <paramref name="freeBytes"/>, but at
    /// least one row. <paramref name="width"/> and <paramref name="storage"/> size the backward's fp32 d-hidden
    /// accumulator (bf16 storage only).
    /// </summary>
    public static LogProbTiling Plan(int rows, int vocab, int width, DType storage, long freeBytes, long maxTileFloats, int maxChunk)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocab, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxChunk, 1);
        int chunk = Math.Min(vocab, maxChunk);
        long budgetFloats = Math.Min(maxTileFloats, Math.Max(0, freeBytes) / FreeMemoryShare / sizeof(float));
        int rowBlock = (int)Math.Clamp(budgetFloats / chunk, 1, Math.Max(1, rows));
        long tile = (long)rowBlock * chunk * sizeof(float);
        long stats = 4L * rows * sizeof(float);
        long hiddenAccumulator = storage == DType.Float32 ? 0 : (long)rows * width * sizeof(float);
        return new LogProbTiling(rows, vocab, rowBlock, chunk, tile + Math.Max(stats, hiddenAccumulator));
    }

    public override string ToString() =>
        $"{RowBlock} rows x {VocabChunk} vocabulary columns per tile, peak scratch {ScratchBytes / 1048576.0:F1} MiB " +
        $"(unfused logits: {UnfusedLogitBytes / 1048576.0:F1} MiB)";
}
