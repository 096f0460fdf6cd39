namespace OR1.Native.Kernels;

/// <summary>
/// The launch plan of kernels/attention_decode.cu (flash-decoding) for one decode call: which split kernel runs (query heads
/// per block, 16-byte or scalar loads), into how many splits the cache positions are cut, and the shared memory and partials
/// that takes. The split count is the one decision here that shapes performance: a block per (batch row, kv head) leaves
/// most of a GPU idle at batch 1, so the positions are cut until the grid has about <c>deviceBlocks</c> blocks, but never
/// into chunks shorter than <see cref="MinChunk"/>, below which a block's fixed costs (its query, its merge through shared
/// memory, writing and re-reading its partial) stop being small against the cache it reads.
/// </summary>
/// <remarks>
/// The rule: blocks = batch x kvHeads x headChunks; splits = clamp(floor(deviceBlocks / blocks), 1, maxLength / MinChunk),
/// and at most 65,535 (they are the grid's z); chunk = maxLength / splits rounded up to a multiple of <see cref="ChunkAlign"/>. The host knows the cache's capacity
/// (maxLength), not each row's length (a device tensor), so the chunk is cut from the capacity and a row shorter than it
/// uses only its first ceil(length / chunk) splits; the other blocks return at once. With deviceBlocks = SMs x 8 (the Cuda
/// runtime's <see cref="IKernelRuntime.GridStrideBlocks"/>, 1,056 on an H100): batch 1 x 32K, 2 kv heads gives 128 splits of
/// 256 positions (256 blocks); batch 64 x 4K, 4 kv heads gives 4 splits of 1,024 (1,024 blocks); batch 64 x 4K, 2 kv heads,
/// 8 splits of 512 (1,024 blocks); from batch 264 with 4 kv heads the grid is full without a split. The split count depends on the batch, so one row's result may differ in the last bits between steps
/// with different batch sizes (each step is deterministic); a fixed chunk would make it batch-invariant at the cost of a
/// combine pass at every batch size.
/// </remarks>
internal readonly record struct DecodeKernels(int HeadsPerBlock, int HeadChunks, bool Vectorized, int GroupLanes, int Splits, int Chunk)
{
    /// <summary>Threads per split block (DEC_THREADS) and per combine block (DEC_COMBINE_THREADS).</summary>
    public const int Threads = 128, CombineThreads = 128;

    /// <summary>Warps per split block (DEC_WARPS).</summary>
    private const int Warps = 4;

    /// <summary>Head-dim columns per lane (DEC_COLS): 16 bytes of bf16.</summary>
    private const int LaneColumns = 8;

    /// <summary>Query heads per block the kernels are instantiated for (OR1_DECODE_SPLIT_KERNELS).</summary>
    private static ReadOnlySpan<int> HeadsPerBlockSizes => [1, 2, 4, 8];

    /// <summary>The fewest cache positions a split takes.</summary>
    public const int MinChunk = 256;

    /// <summary>Chunks are multiples of this many positions, so a future paged cache's pages (16 to 64 rows) never straddle two blocks.</summary>
    public const int ChunkAlign = 64;

    /// <param name="heads">the attention heads (head dim at most <see cref="KernelLaunchers.MaxHeadDim"/>).</param>
    /// <param name="batch">rows decoded in this call.</param>
    /// <param name="maxLength">positions per cache slot (the cache's capacity).</param>
    /// <param name="deviceBlocks">blocks that fill the device (<see cref="IKernelRuntime.GridStrideBlocks"/>).</param>
    /// <param name="cachesAligned">whether both caches start on a 16-byte boundary (the vector path's loads need it).</param>
    public static DecodeKernels For(AttentionHeads heads, int batch, int maxLength, int deviceBlocks, bool cachesAligned)
    {
        int group = heads.NumHeads / heads.NumKvHeads;
        int perBlock = HeadsPerBlockSizes[^1];
        foreach (int size in HeadsPerBlockSizes)
        {
            if (size < group) continue;
            perBlock = size;
            break;
        }
        int headChunks = (group + perBlock - 1) / perBlock;
        int lanes = 1;
        while (lanes * LaneColumns < heads.HeadDim) lanes <<= 1;
        long blocks = Math.Max(1L, (long)batch * heads.NumKvHeads * headChunks);
        int maxSplits = Math.Clamp(maxLength / MinChunk, 1, KernelLaunchers.MaxGridYZ); // splits are the grid's z
        int splits = (int)Math.Clamp(deviceBlocks / blocks, 1, maxSplits);
        int chunk = maxLength;
        if (splits > 1)
        {
            chunk = ((maxLength + splits - 1) / splits + ChunkAlign - 1) / ChunkAlign * ChunkAlign;
            splits = (maxLength + chunk - 1) / chunk;
        }
        return new(perBlock, headChunks, heads.HeadDim % LaneColumns == 0 && cachesAligned, lanes, splits, chunk);
    }

    /// <summary>Row groups per block: each warp holds 32 / GroupLanes cache rows at a time.</summary>
    public int Groups => Warps * 32 / GroupLanes;

    /// <summary>attention_decode_split[_scalar]_g&lt;HeadsPerBlock&gt;_{f32,bf16}.</summary>
    public string Split(DType storage) => $"attention_decode_split{(Vectorized ? "" : "_scalar")}_g{HeadsPerBlock}_{Suffix(storage)}";

    public static string Combine(DType storage) => $"attention_decode_combine_{Suffix(storage)}";

    /// <summary>
    /// The split kernel's grid: (batch, kv heads x head chunks, splits). The batch is on x, the one dimension a GPU takes
    /// past 65,535: a step's rows are its requests and a chunked prefill's positions. Splits are at most the device's
    /// blocks (<see cref="For"/>), so z never reaches the limit.
    /// </summary>
    public Dim3 SplitGrid(AttentionHeads heads, int batch) => new((uint)batch, (uint)(heads.NumKvHeads * HeadChunks), (uint)Splits);

    /// <summary>The combine's grid: one warp per (batch row, query head).</summary>
    public static uint CombineGrid(AttentionHeads heads, int batch) => (uint)(((long)batch * heads.NumHeads + CombineThreads / 32 - 1) / (CombineThreads / 32));

    /// <summary>Each group's accumulators, max and sum per head, and the block's max and sum per head (attention_decode_split).</summary>
    public int SharedBytes(int headDim) => (Groups * HeadsPerBlock * (headDim + 2) + 2 * HeadsPerBlock) * sizeof(float);

    /// <summary>The partials of a split launch: per (row, query head, split) D unnormalised outputs and (m, l).</summary>
    public long PartialBytes(AttentionHeads heads, int batch) => (long)batch * heads.NumHeads * Splits * (heads.HeadDim + 2) * sizeof(float);

    private static string Suffix(DType storage) => storage switch
    {
        DType.Float32 => "f32",
        DType.BFloat16 => "bf16",
        _ => throw new ArgumentOutOfRangeException(nameof(storage), storage, "decode kernels exist for Float32 and BFloat16"),
    };
}
