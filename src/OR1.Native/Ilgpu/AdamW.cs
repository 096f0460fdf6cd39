using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// AdamW with torch.optim.AdamW's operation order (the same as the Cpu backend's): decay, moments, then
/// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps). The step's scalars are formed on the host in double
/// and rounded once, as torch does with its Python-float hyper-parameters.
/// </summary>
internal static class IlgpuAdamW
{
    /// <summary>The per-step scalars, already rounded to fp32.</summary>
    public struct StepArgs
    {
        public float GradientScale, DecayFactor, Beta1, Beta2, OneMinusBeta1, OneMinusBeta2, StepSize, Bc2Sqrt, Epsilon;
    }

    [IlgpuKernel]
    public static void StepKernel(ArrayView<float> parameter, ArrayView<float> gradient, ArrayView<float> m, ArrayView<float> v, StepArgs a)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < parameter.Length; i += stride)
        {
            float g = gradient[i] * a.GradientScale;
            float p = parameter[i] * a.DecayFactor;
            float mi = m[i] * a.Beta1 + g * a.OneMinusBeta1;
            float vi = v[i] * a.Beta2 + g * g * a.OneMinusBeta2;
            p -= a.StepSize * mi / (MathF.Sqrt(vi) / a.Bc2Sqrt + a.Epsilon);
            m[i] = mi;
            v[i] = vi;
            parameter[i] = p;
        }
    }

    public static StepArgs Args(AdamWOptions options, bool decay, int step, float gradientScale) => new()
    {
        GradientScale = gradientScale,
        DecayFactor = decay ? (float)(1 - options.LearningRate * options.WeightDecay) : 1f,
        Beta1 = (float)options.Beta1,
        Beta2 = (float)options.Beta2,
        OneMinusBeta1 = (float)(1 - options.Beta1),
        OneMinusBeta2 = (float)(1 - options.Beta2),
        StepSize = (float)(options.LearningRate / (1 - Math.Pow(options.Beta1, step))),
        Bc2Sqrt = (float)Math.Sqrt(1 - Math.Pow(options.Beta2, step)),
        Epsilon = (float)options.Epsilon,
    };

    public static void Step(IlgpuDevice device, ArrayView<float> parameter, ArrayView<float> gradient, ArrayView<float> m, ArrayView<float> v, StepArgs args)
    {
        if (parameter.Length == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, StepArgs>(StepKernel)(
            new KernelConfig(p.Groups(parameter.Length, p.BlockThreads), p.BlockThreads), parameter, gradient, m, v, args);
    }
}
