using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// RMSNorm, y = w * x / sqrt(mean(x^2) + eps), as Qwen2 computes it in fp32. One group per row
/// (grid-stride over rows): threads stride the row, the sum of squares is a group reduction, and 1/rms
/// is saved per row for the backward. The weight gradient is a deterministic column sum of
/// g * x * invRms over rows (<see cref="IlgpuElementwise.ColumnSumKernel"/>).
/// </summary>
internal static class IlgpuRmsNorm
{
    [IlgpuKernel]
    public static void ForwardKernel(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> output, ArrayView<float> invRms,
        int rows, int width, float eps)
    {
        var scratch = SharedMemory.Allocate<float>(32);
        for (int n = Grid.IdxX; n < rows; n += Grid.DimX)
        {
            long row = (long)n * width;
            float squares = 0f;
            for (int i = Group.IdxX; i < width; i += Group.DimX)
            {
                float v = x[row + i];
                squares += v * v;
            }
            squares = Collectives.GroupSum(squares, scratch);
            float r = 1f / MathF.Sqrt(squares / width + eps);
            if (Group.IdxX == 0) invRms[n] = r;
            for (int i = Group.IdxX; i < width; i += Group.DimX) output[row + i] = x[row + i] * r * weight[i];
        }
    }

    /// <summary>dx_i = r (w_i g_i) - r^3 x_i / D * Σ_j w_j g_j x_j.</summary>
    [IlgpuKernel]
    public static void BackwardKernel(ArrayView<float> dOutput, ArrayView<float> x, ArrayView<float> weight, ArrayView<float> invRms,
        ArrayView<float> dx, int rows, int width)
    {
        var scratch = SharedMemory.Allocate<float>(32);
        for (int n = Grid.IdxX; n < rows; n += Grid.DimX)
        {
            long row = (long)n * width;
            float dot = 0f;
            for (int i = Group.IdxX; i < width; i += Group.DimX) dot += dOutput[row + i] * weight[i] * x[row + i];
            dot = Collectives.GroupSum(dot, scratch);
            float r = invRms[n];
            float coefficient = -r * r * r * dot / width;
            for (int i = Group.IdxX; i < width; i += Group.DimX)
                dx[row + i] = dOutput[row + i] * weight[i] * r + coefficient * x[row + i];
        }
    }

    public static void Forward(IlgpuDevice device, ArrayView<float> x, ArrayView<float> weight, float eps, ArrayView<float> output,
        ArrayView<float> invRms, int rows, int width)
    {
        if (rows == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float>(ForwardKernel)(
            new KernelConfig(p.Groups(rows), p.BlockThreads), x, weight, output, invRms, rows, width, eps);
    }

    public static void Backward(IlgpuDevice device, ArrayView<float> dOutput, ArrayView<float> x, ArrayView<float> weight,
        ArrayView<float> invRms, ArrayView<float> dx, ArrayView<float> dWeight, int rows, int width)
    {
        if (rows == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(BackwardKernel)(
            new KernelConfig(p.Groups(rows), p.BlockThreads), dOutput, x, weight, invRms, dx, rows, width);
        IlgpuElementwise.ColumnSum(device, dOutput, x, invRms, dWeight, rows, width, mode: 1);
    }
}
