namespace OR1.Native.Cuda;

/// <summary>How the Cuda backend runs its GEMMs.</summary>
/// <param name="Tf32">fp32 GEMMs on the tensor cores with TF32 inputs (CUBLAS_COMPUTE_32F_FAST_TF32), as PyTorch's
/// allow_tf32; off by default (as in PyTorch), so fp32 means fp32. bf16 GEMMs always accumulate in fp32.</param>
/// <param name="BuiltinGemm">Use the tiled kernel of kernels/gemm.cu instead of cuBLAS (slow; for checking cuBLAS or
/// running where it is missing). Without it, a cuBLAS that cannot be loaded is an error naming the library.</param>
public sealed record CudaOptions(bool Tf32 = false, bool BuiltinGemm = false)
{
    /// <summary>The defaults: cuBLAS, no TF32.</summary>
    public static CudaOptions Default { get; } = new();
}
