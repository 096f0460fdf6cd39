namespace OR1.Native;

/// <summary>The CUDA device a backend runs on and the CUDA libraries it uses, as the driver reports them.</summary>
/// <param name="Name">The device's name (cuDeviceGetName), e.g. "NVIDIA H100 80GB HBM3".</param>
/// <param name="Ordinal">The CUDA device ordinal the backend opened.</param>
/// <param name="Multiprocessors">Streaming multiprocessors (SMs).</param>
/// <param name="ComputeCapabilityMajor">Compute capability, major (9 on H100/H200).</param>
/// <param name="ComputeCapabilityMinor">Compute capability, minor.</param>
/// <param name="TotalMemoryBytes">Device memory in all.</param>
/// <param name="FreeMemoryBytes">Device memory free when the facts were read; null when the driver would not say.</param>
/// <param name="DriverVersion">The CUDA version the driver supports (cuDriverGetVersion), e.g. "12.4".</param>
/// <param name="NvrtcVersion">NVRTC's version when it can be loaded (the Cuda backend compiles kernels with it when no
/// prebuilt PTX fits); null when it cannot, or for a backend that never uses it.</param>
/// <param name="CublasVersion">The cuBLAS that runs the backend's GEMMs (major.minor.patch); null when the backend's GEMMs
/// do not run on cuBLAS.</param>
public sealed record GpuFacts(
    string Name,
    int Ordinal,
    int Multiprocessors,
    int ComputeCapabilityMajor,
    int ComputeCapabilityMinor,
    long TotalMemoryBytes,
    long? FreeMemoryBytes,
    string DriverVersion,
    string? NvrtcVersion,
    string? CublasVersion)
{
    /// <summary>"major.minor", e.g. "9.0".</summary>
    public string ComputeCapability => $"{ComputeCapabilityMajor}.{ComputeCapabilityMinor}";
}
