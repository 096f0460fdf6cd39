using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Rotary embedding in HF's rotate_half convention, with the angles HF Qwen2 computes in fp32:
/// inv_freq[i] = 1 / theta^(2i/D) (computed on the host exactly as the Cpu backend does and kept on the
/// device per (theta, D)), angle = (float)pos * inv_freq[i]. The fp32 angle is reduced to [-pi, pi] in
/// double before its sine and cosine, because GPU sin/cos instructions are only accurate near zero and
/// angles reach thousands of radians at long positions. One thread per (row, head, pair); output may
/// alias input (each thread loads both halves of its pair before storing).
/// </summary>
internal static class IlgpuRope
{
    private const double TwoPi = 2 * Math.PI;

    [IlgpuKernel]
    public static void ApplyKernel(ArrayView<float> input, ArrayView<int> positions, ArrayView<float> invFreq, ArrayView<float> output,
        int rows, int numHeads, int headDim, float sign)
    {
        int half = headDim / 2;
        long pairs = (long)rows * numHeads * half;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long e = Grid.GlobalIndex.X; e < pairs; e += stride)
        {
            long rowHead = e / half;
            int i = (int)(e - rowHead * half);
            long n = rowHead / numHeads;
            float angle = positions[n] * invFreq[i];
            double turns = Math.Floor(angle / TwoPi + 0.5);
            float reduced = (float)(angle - turns * TwoPi);
            float c = MathF.Cos(reduced), s = sign * MathF.Sin(reduced);
            long at = rowHead * headDim + i;
            float x1 = input[at], x2 = input[at + half];
            output[at] = x1 * c - x2 * s;
            output[at + half] = x2 * c + x1 * s;
        }
    }

    /// <summary>inv_freq as HF computes it (and as the Cpu backend's RopeTable does), in fp32.</summary>
    public static float[] InverseFrequencies(float theta, int headDim)
    {
        int half = headDim / 2;
        var invFreq = new float[half];
        for (int i = 0; i < half; i++) invFreq[i] = 1f / MathF.Pow(theta, 2 * i / (float)headDim);
        return invFreq;
    }

    public static void Apply(IlgpuDevice device, ArrayView<float> input, ArrayView<int> positions, ArrayView<float> invFreq,
        ArrayView<float> output, int rows, int numHeads, int headDim, bool inverse)
    {
        long pairs = (long)rows * numHeads * (headDim / 2);
        if (pairs == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int, float>(ApplyKernel)(
            new KernelConfig(p.Groups(pairs, p.BlockThreads), p.BlockThreads), input, positions, invFreq, output,
            rows, numHeads, headDim, inverse ? -1f : 1f);
    }
}
