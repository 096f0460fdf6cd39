using System.CommandLine;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Cuda;
using OR1.Native.Emu;
using OR1.Native.Ilgpu;

namespace OR1.Runner.Cli;

/// <summary>The --device option and the backend it selects.</summary>
public static class Devices
{
    public static readonly string[] Known = ["cpu", "cuda", "emu", "ilgpu-cuda", "ilgpu-cpu"];

    public static Option<string> CreateOption() => new("--device")
    {
        Description = "Backend to run on: cpu (default), cuda (our CUDA kernels), emu (the CUDA kernels on the host emulator: slow, for testing), ilgpu-cuda, ilgpu-cpu (ILGPU's simulator: very slow)",
        DefaultValueFactory = _ => "cpu",
    };

    public static IBackend Create(string device)
    {
        try
        {
            return device.ToLowerInvariant() switch
            {
                "cpu" => new CpuBackend(),
                "cuda" => new CudaBackend(),
                "emu" => new EmuBackend(),
                "ilgpu-cuda" => IlgpuBackend.CreateCuda(),
                "ilgpu-cpu" => IlgpuBackend.CreateCpuSimulator(),
                _ => throw new CliException($"--device '{device}' is not a backend this build has; available: {string.Join(", ", Known)}"),
            };
        }
        catch (BackendUnavailableException e)
        {
            throw new CliException($"--device '{device}': {e.Message}", e);
        }
    }
}
