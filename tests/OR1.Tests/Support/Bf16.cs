using OR1.Native;

namespace OR1.Tests.Support;

/// <summary>
/// bf16 test data: values rounded to bf16 on the host (so the double reference sees exactly what the device stores),
/// uploaded as BFloat16 tensors, and read back widened to float.
/// </summary>
public static class Bf16
{
    /// <summary>Each value rounded to the nearest bf16 (ties to even) and widened back: the value a BFloat16 tensor holds.</summary>
    public static float[] Round(float[] values) => values.Select(v => (float)(BFloat16)v).ToArray();

    /// <summary>A BFloat16 tensor holding <paramref name="values"/> rounded to bf16.</summary>
    public static Tensor BFloat16s(this IBackend backend, float[] values, params int[] shape)
    {
        var t = backend.Allocate(DType.BFloat16, new TensorShape(shape));
        backend.Upload<BFloat16>(values.Select(v => (BFloat16)v).ToArray(), t);
        return t;
    }

    /// <summary>A BFloat16 tensor filled with NaN (outputs an op must overwrite completely).</summary>
    public static Tensor PoisonedBFloat16(this IBackend backend, params int[] shape)
    {
        var t = backend.Allocate(DType.BFloat16, new TensorShape(shape));
        backend.Fill(t, float.NaN);
        return t;
    }

    /// <summary>The tensor's values as floats, widening BFloat16 exactly.</summary>
    public static float[] ToFloatsWidened(this Tensor t)
    {
        if (t.DType == DType.Float32) return t.ToFloats();
        var raw = new BFloat16[t.ElementCount];
        t.Backend.Download<BFloat16>(t, raw);
        return raw.Select(v => (float)v).ToArray();
    }
}

/// <summary>The backends that store BFloat16 (the CUDA kernels: on the emulator always, on a GPU where there is one).</summary>
public static class Bf16BackendCases
{
    public static IEnumerable<TestFixtureData> All() => BackendCases.All().Where(f => ((BackendCase)f.Arguments[0]!).Name is "Emu" or "EmuGpuShapes" or "Cuda");

    /// <summary>The backends that must refuse BFloat16 storage with a clear error (they compute and store in fp32).</summary>
    public static IEnumerable<TestFixtureData> Fp32Only() => BackendCases.All().Where(f => ((BackendCase)f.Arguments[0]!).Name is "Cpu" or "Ilgpu-CPU");
}
