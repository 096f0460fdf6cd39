using System.Reflection;
using System.Runtime.InteropServices;

namespace OR1.Native.Cuda;

/// <summary>
/// Maps the library names of our bindings ("cuda", "nvrtc", "cublas") to the sonames that exist on
/// Linux (the driver's libcuda.so.1; NVRTC and cuBLAS of CUDA 12 or 11), through one DllImport resolver
/// for this assembly. A library that is missing surfaces as <see cref="DllNotFoundException"/> at the
/// first call, which the Cuda backend turns into <see cref="BackendUnavailableException"/>.
/// </summary>
internal static class CudaLibraries
{
    public const string Driver = "or1-cuda";
    public const string Nvrtc = "or1-nvrtc";
    public const string Cublas = "or1-cublas";
    /// <summary>Open MPI (the data-parallel collectives; the assembly has one resolver, so it lives here too).</summary>
    public const string Mpi = "or1-mpi";
    /// <summary>NCCL 2 (GPU collectives).</summary>
    public const string Nccl = "or1-nccl";

    private static readonly string[] s_driver = ["libcuda.so.1", "libcuda.so"];
    private static readonly string[] s_nvrtc = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so.11.1", "libnvrtc.so.11.0", "libnvrtc.so"];
    private static readonly string[] s_cublas = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"];
    /// <summary>Open MPI 4 and 5 (Debian's libopenmpi3 ships libmpi.so.40).</summary>
    internal static readonly string[] MpiCandidates = ["libmpi.so.40", "libmpi.so"];
    private static readonly string[] s_nccl = ["libnccl.so.2", "libnccl.so"];
    private static int s_registered;

    /// <summary>Installs the resolver (idempotent; the bindings' static constructors call it).</summary>
    public static void Register()
    {
        if (Interlocked.Exchange(ref s_registered, 1) == 1) return;
        NativeLibrary.SetDllImportResolver(typeof(CudaLibraries).Assembly, Resolve);
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        string[]? candidates = name switch
        {
            Driver => s_driver,
            Nvrtc => s_nvrtc,
            Cublas => s_cublas,
            Mpi => MpiCandidates,
            Nccl => s_nccl,
            _ => null,
        };
        if (candidates is null) return 0;
        foreach (var candidate in candidates)
            if (NativeLibrary.TryLoad(candidate, out nint handle)) return handle;
        // Toolkits outside the loader's path: CUDA_HOME/CUDA_PATH, /usr/local/cuda, OR1_CUDA_LIBRARY_PATH (':'-separated).
        foreach (var dir in SearchDirectories())
            foreach (var candidate in candidates)
            {
                string full = Path.Combine(dir, candidate);
                if (File.Exists(full) && NativeLibrary.TryLoad(full, out nint handle)) return handle;
            }
        return 0;
    }

    private static IEnumerable<string> SearchDirectories()
    {
        if (Environment.GetEnvironmentVariable("OR1_CUDA_LIBRARY_PATH") is { Length: > 0 } extra)
            foreach (var d in extra.Split(':', StringSplitOptions.RemoveEmptyEntries)) yield return d;
        foreach (var variable in new[] { "CUDA_HOME", "CUDA_PATH" })
            if (Environment.GetEnvironmentVariable(variable) is { Length: > 0 } root)
            {
                yield return Path.Combine(root, "lib64");
                yield return Path.Combine(root, "lib");
            }
        yield return "/usr/local/cuda/lib64";
        yield return "/usr/local/cuda/targets/x86_64-linux/lib";
    }

    /// <summary>The sonames tried for a binding, for messages.</summary>
    public static string Describe(string name) => string.Join(", ", name switch
    {
        Driver => s_driver,
        Nvrtc => s_nvrtc,
        Cublas => s_cublas,
        _ => [],
    });
}
