using OR1.Native;

namespace OR1.Runner.Commands;

/// <summary>The kernel files beside OR1.Native.dll (<see cref="KernelFiles"/>), so an installed tool or package shows what it carries.</summary>
/// <param name="Directory">The kernels folder.</param>
/// <param name="PrebuiltPtx">Each prebuilt architecture folder with its PTX files.</param>
/// <param name="CudaSources">CUDA sources for NVRTC (kernels/src/*.cu).</param>
/// <param name="EmulatorLibrary">The Emu backend's library, or null when it is not there.</param>
public sealed record InfoKernelFiles(string Directory, IReadOnlyList<InfoKernelFiles.Architecture> PrebuiltPtx, int CudaSources, string? EmulatorLibrary)
{
    /// <summary>One prebuilt architecture folder, e.g. sm_90 with 14 PTX files.</summary>
    public sealed record Architecture(string Name, int PtxFiles);

    /// <summary>What this installation carries.</summary>
    public static InfoKernelFiles Find() =>
        new(KernelFiles.Directory, KernelFiles.PrebuiltPtx().Select(a => new Architecture(a.Architecture, a.PtxFiles)).ToList(),
            KernelFiles.SourceFiles, KernelFiles.EmulatorLibrary);
}
