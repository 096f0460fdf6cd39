using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>SwiGLU, y = silu(g) * u = g * sigmoid(g) * u, and its gradient; grid-stride elementwise kernels.</summary>
internal static class IlgpuSwiGlu
{
    private static long Stride => (long)Grid.DimX * Group.DimX;

    private static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    [IlgpuKernel]
    public static void ForwardKernel(ArrayView<float> gate, ArrayView<float> up, ArrayView<float> output)
    {
        for (long i = Grid.GlobalIndex.X; i < output.Length; i += Stride)
        {
            float g = gate[i];
            output[i] = g * Sigmoid(g) * up[i];
        }
    }

    /// <summary>du = dy * g * s; dg = dy * u * s * (1 + g * (1 - s)), s = sigmoid(g).</summary>
    [IlgpuKernel]
    public static void BackwardKernel(ArrayView<float> dOutput, ArrayView<float> gate, ArrayView<float> up,
        ArrayView<float> dGate, ArrayView<float> dUp)
    {
        for (long i = Grid.GlobalIndex.X; i < dGate.Length; i += Stride)
        {
            float g = gate[i], s = Sigmoid(g), t = dOutput[i] * s;
            dUp[i] = t * g;
            dGate[i] = t * up[i] * (g - (g * s - 1f));
        }
    }

    public static void Forward(IlgpuDevice device, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> output)
    {
        if (output.Length == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>>(ForwardKernel)(
            new KernelConfig(p.Groups(output.Length, p.BlockThreads), p.BlockThreads), gate, up, output);
    }

    public static void Backward(IlgpuDevice device, ArrayView<float> dOutput, ArrayView<float> gate, ArrayView<float> up,
        ArrayView<float> dGate, ArrayView<float> dUp)
    {
        if (dGate.Length == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(BackwardKernel)(
            new KernelConfig(p.Groups(dGate.Length, p.BlockThreads), p.BlockThreads), dOutput, gate, up, dGate, dUp);
    }
}
