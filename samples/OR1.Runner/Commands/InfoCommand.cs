using System.CommandLine;
using OR1.Native;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary>
/// <c>or1 info</c>: the chosen backend with a visible kernel check, then every backend this build has (available, or
/// why not) and the kernel files beside OR1.Native.dll, so an installed tool or package shows what it carries.
/// </summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var device = Devices.CreateOption();
        var command = new Command("info", "Show the backend and run a small kernel check") { device };
        command.SetAction(r => Run(r.GetValue(device)!));
        return command;
    }

    private static string FirstLine(string text) => text.Split('\n')[0].Trim();

    public static int Run(string device)
    {
        using var backend = Devices.Create(device);
        Console.WriteLine($"Backend: {backend.Description}");
        using var rewards = backend.Allocate(DType.Float32, new TensorShape(4), "rewards");
        using var advantages = backend.Allocate(DType.Float32, new TensorShape(4), "advantages");
        using var groups = Segments.FromLengths(backend, [4]);
        backend.Upload<float>([1f, 0f, 1f, 1f], rewards);
        backend.GrpoAdvantages(rewards, groups, 1e-6f, advantages);
        var result = new float[4];
        backend.Download<float>(advantages, result);
        Console.WriteLine($"GRPO advantages of rewards [1, 0, 1, 1]: [{string.Join(", ", result.Select(a => a.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}]");
        if (backend is OR1.Native.Kernels.KernelBackend kernels)
            Console.WriteLine($"Device work for that check: {kernels.Counters}; debug sync {(kernels.DebugSync ? "on (a wait after every launch)" : "off")}");

        Console.WriteLine("Backends on this machine:");
        foreach ((string name, bool available, string detail) in Backends.Survey())
            Console.WriteLine($"  {name,-11} {(available ? "available  " : "unavailable")} {FirstLine(detail)}");

        Console.WriteLine($"Kernel files ({KernelFiles.Directory}):");
        var ptx = KernelFiles.PrebuiltPtx();
        Console.WriteLine(ptx.Count == 0
            ? "  prebuilt PTX: none (the Cuda backend compiles the sources with NVRTC)"
            : $"  prebuilt PTX: {string.Join(", ", ptx.Select(a => $"{a.Architecture} ({a.PtxFiles} files)"))}");
        Console.WriteLine($"  CUDA sources for NVRTC: {KernelFiles.SourceFiles} files");
        Console.WriteLine($"  emulator library: {KernelFiles.EmulatorLibrary ?? "not found (the Emu backend is unavailable)"}");
        return 0;
    }
}
