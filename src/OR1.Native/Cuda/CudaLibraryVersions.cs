using CublasApi = OR1.Native.Cuda.Cublas;
using NvrtcApi = OR1.Native.Cuda.Nvrtc;

namespace OR1.Native.Cuda;

/// <summary>
/// The CUDA libraries this process can load and their versions, asked without a GPU: the driver (cuDriverGetVersion
/// needs no cuInit), NVRTC and cuBLAS (cublasGetProperty needs no handle). On a machine where the Cuda backend does not
/// start, this tells a missing device from a missing library; null means the library could not be loaded.
/// </summary>
/// <param name="Driver">The CUDA version the installed driver supports, e.g. "12.4".</param>
/// <param name="Nvrtc">NVRTC's version, e.g. "12.4".</param>
/// <param name="Cublas">cuBLAS's version, major.minor.patch.</param>
/// <param name="Nccl">NCCL's version (the GPU collectives of data-parallel training), major.minor.patch.</param>
public sealed record CudaLibraryVersions(string? Driver, string? Nvrtc, string? Cublas, string? Nccl = null)
{
    /// <summary>Loads each library (through the same resolver as the Cuda backend) and asks its version.</summary>
    public static CudaLibraryVersions Probe() => new(DriverVersion(), NvrtcVersion(), CublasVersion(), Distributed.NcclCollectives.Version(out _));

    /// <summary>cuDriverGetVersion's 12040 as "12.4".</summary>
    internal static string FormatDriver(int version) => $"{version / 1000}.{version % 1000 / 10}";

    /// <summary>cublasGetVersion's 120405 (major * 10000 + minor * 100 + patch, CUBLAS_VERSION's encoding) as "12.4.5".</summary>
    internal static string FormatCublas(int version) => $"{version / 10000}.{version / 100 % 100}.{version % 100}";

    internal static string? DriverVersion() =>
        Ask(() => CudaDriver.cuDriverGetVersion(out int version) == 0 ? FormatDriver(version) : null);

    internal static string? NvrtcVersion() =>
        Ask(() => NvrtcApi.nvrtcVersion(out int major, out int minor) == 0 ? $"{major}.{minor}" : null);

    private static string? CublasVersion() =>
        Ask(() => CublasApi.cublasGetProperty(CublasApi.MAJOR_VERSION, out int major) == 0
                  && CublasApi.cublasGetProperty(CublasApi.MINOR_VERSION, out int minor) == 0
                  && CublasApi.cublasGetProperty(CublasApi.PATCH_LEVEL, out int patch) == 0
            ? $"{major}.{minor}.{patch}"
            : null);

    // A library that is absent, or too old to export the entry point, has no version to report.
    private static string? Ask(Func<string?> query)
    {
        try
        {
            return query();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }
}
