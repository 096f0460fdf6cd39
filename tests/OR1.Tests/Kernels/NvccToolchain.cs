using OR1.Tests.Support;

namespace OR1.Tests.Kernels;

/// <summary>
/// The CUDA toolchain the compiled-code checks run: nvcc (whose ptxas -v reports registers, spills and shared memory),
/// its host compiler and cuobjdump (SASS). Debian's nvidia-cuda-toolkit (CUDA 11.8) brings all three but needs g++ 11
/// or older as host compiler, so that is looked for first, as the root CMakeLists.txt does.
/// </summary>
internal sealed record NvccToolchain(string Nvcc, string HostCompiler, string Cuobjdump)
{
    /// <summary>The toolchain, or null with the reason when a piece is missing.</summary>
    public static NvccToolchain? Find(out string missing)
    {
        string? nvcc = Which("nvcc");
        string? cuobjdump = nvcc is null ? null : Which("cuobjdump", Path.GetDirectoryName(nvcc));
        string? host = Which("g++-11") ?? Which("g++-10") ?? Which("g++");
        missing = nvcc is null ? "nvcc is not installed (Debian: apt-get install nvidia-cuda-toolkit g++-11, from the non-free component)"
            : cuobjdump is null ? $"cuobjdump is not installed next to {nvcc}"
            : host is null ? "no host compiler for nvcc (g++-11, g++-10 or g++)"
            : "";
        return nvcc is null || cuobjdump is null || host is null ? null : new NvccToolchain(nvcc, host, cuobjdump);
    }

    private static string? Which(string tool, string? preferredDirectory = null)
    {
        var directories = new List<string>();
        if (preferredDirectory is not null) directories.Add(preferredDirectory);
        directories.AddRange((Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        if (Environment.GetEnvironmentVariable("CUDA_PATH") is { Length: > 0 } cudaPath) directories.Add(Path.Combine(cudaPath, "bin"));
        directories.Add("/usr/local/cuda/bin");
        return directories.Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);
    }

    /// <summary>Runs a tool to completion (see <see cref="ChildProcess.RunAsync"/>).</summary>
    public static Task<(int ExitCode, string Output, string Error)> RunAsync(string tool, IEnumerable<string> arguments, TimeSpan timeout) =>
        ChildProcess.RunAsync(tool, arguments, timeout);
}
