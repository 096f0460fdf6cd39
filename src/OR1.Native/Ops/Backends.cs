using OR1.Native.Cpu;
using OR1.Native.Cuda;
using OR1.Native.Emu;
using OR1.Native.Ilgpu;

namespace OR1.Native;

/// <summary>
/// Every backend this build has, by the name the command line and the benchmarks use:
/// cpu, cuda, emu, ilgpu-cuda, ilgpu-cpu (case-insensitive).
/// </summary>
public static class Backends
{
    /// <summary>The names <see cref="Create"/> accepts, fastest first.</summary>
    public static IReadOnlyList<string> Names { get; } = ["cpu", "cuda", "ilgpu-cuda", "emu", "ilgpu-cpu"];

    /// <summary>One line per name for help texts.</summary>
    public const string Help =
        "cpu (default), cuda (our CUDA kernels), ilgpu-cuda (the ILGPU kernels on a CUDA GPU), " +
        "emu (the CUDA kernels on the host emulator: slow, for testing), ilgpu-cpu (ILGPU's simulator: very slow)";

    /// <summary>
    /// Starts the backend called <paramref name="name"/>. An unknown name is an <see cref="ArgumentException"/>
    /// listing the known ones; a backend that cannot start here (no GPU, no driver, no native library) is a
    /// <see cref="BackendUnavailableException"/> saying what is missing.
    /// </summary>
    public static IBackend Create(string name) => name.ToLowerInvariant() switch
    {
        "cpu" => new CpuBackend(),
        "cuda" => new CudaBackend(),
        "emu" => new EmuBackend(),
        // Bounds checks cost a GPU kernel a lot of time and the ops' arguments are validated on the host.
        "ilgpu-cuda" => IlgpuBackend.CreateCuda(Cuda.CudaBackend.DefaultDevice(), checkIndices: false),
        "ilgpu-cpu" => IlgpuBackend.CreateCpuSimulator(),
        _ => throw new ArgumentException($"'{name}' is not a backend this build has; known: {string.Join(", ", Names)}", nameof(name)),
    };

    /// <summary>
    /// Every backend of <see cref="Names"/> started once and disposed: its description when it starts, or why it
    /// cannot (the message of its <see cref="BackendUnavailableException"/>, or of whatever else it threw).
    /// </summary>
    public static IReadOnlyList<(string Name, bool Available, string Detail)> Survey()
    {
        var result = new List<(string, bool, string)>();
        foreach (string name in Names)
        {
            try
            {
                using IBackend backend = Create(name);
                result.Add((name, true, backend.Description));
            }
            catch (Exception e)
            {
                result.Add((name, false, e.Message));
            }
        }
        return result;
    }

    /// <summary>
    /// Every backend of <see cref="Names"/> started in turn, its <see cref="IBackend.Facts"/> read and its
    /// <see cref="BackendCheck"/> run against the Cpu backend (the Cpu backend's own against the host's double-precision
    /// formulas), then disposed: what <c>or1 info</c> and the GPU check print first. A backend that does not start is a
    /// row saying why, never an exception, and one whose ops throw is a failed check.
    /// </summary>
    /// <param name="beforeCompare">Called with the backend's name, the op's name and the backend's results before they are
    /// compared (see <see cref="BackendCheck.Run"/>): a test seam.</param>
    public static IReadOnlyList<BackendReport> Inspect(Action<string, string, float[]>? beforeCompare = null)
    {
        var result = new List<BackendReport>();
        using IBackend reference = Create("cpu");
        foreach (string name in Names)
        {
            IBackend backend;
            try
            {
                backend = Create(name);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                result.Add(new BackendReport(name, null, e is BackendUnavailableException ? e.Message : $"{e.GetType().Name}: {e.Message}", null));
                continue;
            }
            using (backend)
            {
                BackendFacts facts;
                try
                {
                    facts = backend.Facts();
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // The backend started, so it keeps its row and its check; only the facts are missing, and say why.
                    facts = new BackendFacts(backend.Kind, backend.Description, backend.StorageTypes, $"(facts unavailable: {e.GetType().Name}: {e.Message})");
                }
                var hook = beforeCompare is null ? null : new Action<string, float[]>((op, values) => beforeCompare(name, op, values));
                var check = BackendCheck.Run(backend, backend.Kind == BackendKind.Cpu ? null : reference, hook);
                result.Add(new BackendReport(name, facts, null, check));
            }
        }
        return result;
    }

    /// <summary>Whether <paramref name="name"/> can start on this machine (starts it and disposes it).</summary>
    public static bool CanStart(string name)
    {
        try
        {
            Create(name).Dispose();
            return true;
        }
        catch (BackendUnavailableException)
        {
            return false;
        }
    }
}
