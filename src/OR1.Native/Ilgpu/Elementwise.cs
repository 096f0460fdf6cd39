using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Elementwise and row-movement kernels. Memory-bound, so each is a grid-stride loop over a grid sized
/// to keep every multiprocessor busy (and, on the CPU simulator, to keep the number of simulated groups,
/// each of which costs thread switches, small). Column sums (the bias gradient) are the one reduction:
/// a group owns a tile of one warp's width of columns, its warps sum strided rows, and the warps' partials
/// are added in warp order, so the result is deterministic without atomics.
/// </summary>
internal static class IlgpuElementwise
{
    /// <summary>Largest group the shared partial tile of <see cref="ColumnSumKernel"/> is sized for.</summary>
    public const int MaxGroupThreads = 1024;

    private static long Stride => (long)Grid.DimX * Group.DimX;

    [IlgpuKernel]
    public static void FillKernel(ArrayView<float> x, float value)
    {
        for (long i = Grid.GlobalIndex.X; i < x.Length; i += Stride) x[i] = value;
    }

    [IlgpuKernel]
    public static void AddKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> output)
    {
        for (long i = Grid.GlobalIndex.X; i < output.Length; i += Stride) output[i] = a[i] + b[i];
    }

    [IlgpuKernel]
    public static void ScaleKernel(ArrayView<float> x, float factor)
    {
        for (long i = Grid.GlobalIndex.X; i < x.Length; i += Stride) x[i] *= factor;
    }

    [IlgpuKernel]
    public static void AddBiasKernel(ArrayView<float> x, ArrayView<float> bias, int width)
    {
        for (long i = Grid.GlobalIndex.X; i < x.Length; i += Stride) x[i] += bias[(int)(i % width)];
    }

    /// <summary>Arguments of <see cref="ColumnSumKernel"/>.</summary>
    public struct ColumnSumArgs
    {
        public int Rows;
        public int Width;
        /// <summary>0: sum source; 1: sum source * other * rowScale[row] (RMSNorm's weight gradient).</summary>
        public int Mode;
    }

    /// <summary>
    /// target[c] += Σ_n term(n, c). Group = warps x lanes; lane = column within the tile, warp = row phase.
    /// </summary>
    [IlgpuKernel]
    public static void ColumnSumKernel(ArrayView<float> source, ArrayView<float> other, ArrayView<float> rowScale,
        ArrayView<float> target, ColumnSumArgs args)
    {
        var partial = SharedMemory.Allocate<float>(MaxGroupThreads);
        int lane = Warp.LaneIdx, warp = Warp.WarpIdx, warps = Collectives.WarpsPerGroup, tileWidth = Warp.WarpSize;
        int tiles = (args.Width + tileWidth - 1) / tileWidth;
        for (int tile = Grid.IdxX; tile < tiles; tile += Grid.DimX)
        {
            int c = tile * tileWidth + lane;
            float sum = 0f;
            if (c < args.Width)
            {
                for (int n = warp; n < args.Rows; n += warps)
                {
                    long at = (long)n * args.Width + c;
                    float term = source[at];
                    if (args.Mode == 1) term = term * other[at] * rowScale[n];
                    sum += term;
                }
            }
            partial[warp * tileWidth + lane] = sum;
            Group.Barrier();
            if (warp == 0 && c < args.Width)
            {
                float total = 0f;
                for (int w = 0; w < warps; w++) total += partial[w * tileWidth + lane];
                target[c] += total;
            }
            Group.Barrier();
        }
    }

    /// <summary>destination[i, :] = source[indices[i], :] in 32-bit words.</summary>
    [IlgpuKernel]
    public static void GatherRowsKernel(ArrayView<int> source, ArrayView<int> indices, ArrayView<int> destination, int rowWords)
    {
        for (long e = Grid.GlobalIndex.X; e < destination.Length; e += Stride)
        {
            long i = e / rowWords, w = e - i * rowWords;
            destination[e] = source[(long)indices[i] * rowWords + w];
        }
    }

    /// <summary>destination[i, :] = source[indices[i], :] in 16-bit halves (rows of an odd number of bf16/fp16 values).</summary>
    [IlgpuKernel]
    public static void GatherRowsHalvesKernel(ArrayView<short> source, ArrayView<int> indices, ArrayView<short> destination, int rowHalves)
    {
        for (long e = Grid.GlobalIndex.X; e < destination.Length; e += Stride)
        {
            long i = e / rowHalves, w = e - i * rowHalves;
            destination[e] = source[(long)indices[i] * rowHalves + w];
        }
    }

    /// <summary>destination[indices[i], :] = source[i, :] in 32-bit words (indices distinct).</summary>
    [IlgpuKernel]
    public static void ScatterRowsKernel(ArrayView<int> source, ArrayView<int> indices, ArrayView<int> destination, int rowWords)
    {
        for (long e = Grid.GlobalIndex.X; e < source.Length; e += Stride)
        {
            long i = e / rowWords, w = e - i * rowWords;
            destination[(long)indices[i] * rowWords + w] = source[e];
        }
    }

    /// <summary>destination[indices[i], :] = source[i, :] in 16-bit halves.</summary>
    [IlgpuKernel]
    public static void ScatterRowsHalvesKernel(ArrayView<short> source, ArrayView<int> indices, ArrayView<short> destination, int rowHalves)
    {
        for (long e = Grid.GlobalIndex.X; e < source.Length; e += Stride)
        {
            long i = e / rowHalves, w = e - i * rowHalves;
            destination[(long)indices[i] * rowHalves + w] = source[e];
        }
    }

    // ---------------------------------------------------------------- host side

    public static void Fill(IlgpuDevice device, ArrayView<float> x, float value)
    {
        if (x.Length == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, float>(FillKernel)(new KernelConfig(p.Groups(x.Length, p.BlockThreads), p.BlockThreads), x, value);
    }

    public static void Add(IlgpuDevice device, ArrayView<float> a, ArrayView<float> b, ArrayView<float> output)
    {
        if (output.Length == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>>(AddKernel)(
            new KernelConfig(p.Groups(output.Length, p.BlockThreads), p.BlockThreads), a, b, output);
    }

    public static void Scale(IlgpuDevice device, ArrayView<float> x, float factor)
    {
        if (x.Length == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, float>(ScaleKernel)(new KernelConfig(p.Groups(x.Length, p.BlockThreads), p.BlockThreads), x, factor);
    }

    public static void AddBias(IlgpuDevice device, ArrayView<float> x, ArrayView<float> bias, int width)
    {
        if (x.Length == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<float>, int>(AddBiasKernel)(
            new KernelConfig(p.Groups(x.Length, p.BlockThreads), p.BlockThreads), x, bias, width);
    }

    /// <summary>target[c] += Σ_n source[n, c] (mode 0) or Σ_n source[n, c] other[n, c] rowScale[n] (mode 1).</summary>
    public static void ColumnSum(IlgpuDevice device, ArrayView<float> source, ArrayView<float> other, ArrayView<float> rowScale,
        ArrayView<float> target, int rows, int width, int mode)
    {
        if (rows == 0 || width == 0) return;
        var p = device.Profile;
        int tiles = (width + p.WarpSize - 1) / p.WarpSize;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ColumnSumArgs>(ColumnSumKernel)(
            new KernelConfig(p.Groups(tiles), p.BlockThreads), source, other, rowScale, target,
            new ColumnSumArgs { Rows = rows, Width = width, Mode = mode });
    }

    public static void GatherRows(IlgpuDevice device, ArrayView<byte> source, ArrayView<int> indices, ArrayView<byte> destination, int rowBytes)
    {
        if (destination.Length == 0) return;
        var p = device.Profile;
        var config = new KernelConfig(p.Groups(destination.Length / 2, p.BlockThreads), p.BlockThreads);
        if (rowBytes % 4 == 0 && IsWordAligned(source) && IsWordAligned(destination))
            device.Load<ArrayView<int>, ArrayView<int>, ArrayView<int>, int>(GatherRowsKernel)(
                config, source.Cast<int>(), indices, destination.Cast<int>(), rowBytes / 4);
        else
            device.Load<ArrayView<short>, ArrayView<int>, ArrayView<short>, int>(GatherRowsHalvesKernel)(
                config, source.Cast<short>(), indices, destination.Cast<short>(), rowBytes / 2);
    }

    public static void ScatterRows(IlgpuDevice device, ArrayView<byte> source, ArrayView<int> indices, ArrayView<byte> destination, int rowBytes)
    {
        if (source.Length == 0) return;
        var p = device.Profile;
        var config = new KernelConfig(p.Groups(source.Length / 2, p.BlockThreads), p.BlockThreads);
        if (rowBytes % 4 == 0 && IsWordAligned(source) && IsWordAligned(destination))
            device.Load<ArrayView<int>, ArrayView<int>, ArrayView<int>, int>(ScatterRowsKernel)(
                config, source.Cast<int>(), indices, destination.Cast<int>(), rowBytes / 4);
        else
            device.Load<ArrayView<short>, ArrayView<int>, ArrayView<short>, int>(ScatterRowsHalvesKernel)(
                config, source.Cast<short>(), indices, destination.Cast<short>(), rowBytes / 2);
    }

    /// <summary>Views are cut from 4-byte-aligned allocations, so a view is word-aligned when its offset and length are.</summary>
    private static bool IsWordAligned(ArrayView<byte> view) => view.Length % 4 == 0 && IndexInBytes(view) % 4 == 0;

    private static long IndexInBytes<TView>(TView view) where TView : IContiguousArrayView => view.IndexInBytes;
}
