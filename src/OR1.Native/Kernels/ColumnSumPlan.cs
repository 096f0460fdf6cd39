namespace OR1.Native.Kernels;

/// <summary>
/// The launch shape of a two-stage column sum (kernels/column_sums.cuh: the bias gradient, RMSNorm's weight gradient).
/// Stage 1 runs <see cref="RowBlocks"/> x <see cref="Tiles"/> blocks of <see cref="Threads"/> threads, each adding
/// <see cref="RowsPerBlock"/> rows of a tile of columns into one row of partial sums (<see cref="RowBlocks"/> rows of
/// <see cref="Stride"/> floats in scratch); stage 2 (column_partials_reduce) adds each column's partials in row-block order.
/// The plan is a function of the shape and dtype alone, never of the device or the runtime's grid sizes, so the order of
/// every addition, and so the bits of the sums, are the same on every run and every backend that runs the kernels.
/// </summary>
internal readonly record struct ColumnSumPlan(uint RowBlocks, int RowsPerBlock, uint Tiles, int Stride)
{
    /// <summary>COLUMN_SUM_THREADS: 32 column packs x 8 row lanes.</summary>
    public const int Threads = 256;

    /// <summary>Columns per column_partials_reduce block, and its threads (8 packs of 4 columns x 32 row lanes).</summary>
    public const int ReduceColumns = 32, ReduceThreads = 256;

    /// <summary>Stage-1 blocks a plan aims at: about one wave of 256-thread blocks on an H100 or H200 (132 SMs x 8).</summary>
    private const int TargetBlocks = 1024;

    /// <summary>The fewest rows a stage-1 block takes (4 per row lane), so that a short matrix is not cut into near-empty blocks.</summary>
    private const int MinRowsPerBlock = 32;

    /// <summary>Bytes of the partial sums (fp32).</summary>
    public long PartialBytes => (long)RowBlocks * Stride * sizeof(float);

    /// <summary>The plan for a [<paramref name="rows"/>, <paramref name="width"/>] matrix of <paramref name="storage"/> (both positive).</summary>
    public static ColumnSumPlan For(int rows, int width, DType storage)
    {
        int pack = 16 / storage.SizeOf(); // Pack<S>::N in kernels/vector_io.cuh
        uint tiles = (uint)((width + 32L * pack - 1) / (32L * pack));
        long wanted = Math.Clamp((TargetBlocks + tiles - 1) / tiles, 1, (rows + MinRowsPerBlock - 1) / MinRowsPerBlock);
        int rowsPerBlock = (int)((rows + wanted - 1) / wanted);
        uint rowBlocks = (uint)((rows + rowsPerBlock - 1) / rowsPerBlock);
        int stride = (width + 7) & ~7; // whole 32-byte rows: every partial pack is 16-byte aligned whatever the width
        return new ColumnSumPlan(rowBlocks, rowsPerBlock, tiles, stride);
    }
}
