using OR1.Native.Cuda;
using OR1.Native.Emu;

namespace OR1.Native;

/// <summary>
/// The kernel files an installation carries beside OR1.Native.dll, as the backends look for them: prebuilt PTX per
/// architecture (kernels/sm_80, kernels/sm_90), the CUDA sources NVRTC compiles when no PTX fits (kernels/src), and
/// the emulation library of the Emu backend. For diagnostics (<c>or1 info</c>): a package or tool that lost one of
/// them shows it here instead of failing later.
/// </summary>
public static class KernelFiles
{
    /// <summary>The kernels folder beside OR1.Native.dll.</summary>
    public static string Directory => CudaModules.KernelDirectory;

    /// <summary>Each prebuilt architecture folder (e.g. "sm_90") with its number of PTX files, in name order.</summary>
    public static IReadOnlyList<(string Architecture, int PtxFiles)> PrebuiltPtx()
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        return System.IO.Directory.EnumerateDirectories(Directory, "sm_*")
            .Select(d => (Path.GetFileName(d), System.IO.Directory.EnumerateFiles(d, "*.ptx").Count()))
            .Where(a => a.Item2 > 0)
            .OrderBy(a => a.Item1, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>The number of kernel sources (kernels/src/*.cu) shipped for NVRTC.</summary>
    public static int SourceFiles
    {
        get
        {
            string sources = Path.Combine(Directory, "src");
            return System.IO.Directory.Exists(sources) ? System.IO.Directory.EnumerateFiles(sources, "*.cu").Count() : 0;
        }
    }

    /// <summary>The emulation library the Emu backend would load, or null when none of its candidate paths exists.</summary>
    public static string? EmulatorLibrary => EmuLibrary.Candidates().FirstOrDefault(File.Exists);
}
