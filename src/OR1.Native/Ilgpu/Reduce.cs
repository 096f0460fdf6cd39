using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Sum of squares for the global gradient norm: each group of a fixed grid accumulates its grid-stride
/// share of one tensor in fp32 per thread, reduces in double, and writes one partial; a final one-thread
/// kernel adds all partials of all tensors in order. Deterministic for a fixed launch profile.
/// </summary>
internal static class IlgpuReduce
{
    [IlgpuKernel]
    public static void SumOfSquaresKernel(ArrayView<float> x, ArrayView<double> partials, int firstPartial)
    {
        var scratch = SharedMemory.Allocate<double>(32);
        float sum = 0f;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < x.Length; i += stride)
        {
            float v = x[i];
            sum += v * v;
        }
        double total = Collectives.GroupSum((double)sum, scratch);
        if (Group.IdxX == 0) partials[firstPartial + Grid.IdxX] = total;
    }

    [IlgpuKernel]
    public static void SumPartialsKernel(ArrayView<double> partials, ArrayView<double> result, int count)
    {
        if (Grid.GlobalIndex.X != 0) return;
        double total = 0;
        for (int i = 0; i < count; i++) total += partials[i];
        result[0] = total;
    }

    /// <summary>Groups used per tensor of <paramref name="count"/> elements.</summary>
    public static int Groups(IlgpuDevice device, long count) => device.Profile.Groups(count, 8L * device.Profile.BlockThreads);

    public static void SumOfSquares(IlgpuDevice device, ArrayView<float> x, ArrayView<double> partials, int firstPartial, int groups)
    {
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<double>, int>(SumOfSquaresKernel)(new KernelConfig(groups, p.BlockThreads), x, partials, firstPartial);
    }

    public static void SumPartials(IlgpuDevice device, ArrayView<double> partials, ArrayView<double> result, int count) =>
        device.Load<ArrayView<double>, ArrayView<double>, int>(SumPartialsKernel)(new KernelConfig(1, device.Profile.WarpSize), partials, result, count);
}
