using System.Globalization;
using OR1.Native;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary><c>or1 info</c> as text: the --device check (as before), the backend table, the kernel files and the CUDA libraries.</summary>
public static class InfoText
{
    public static void Write(InfoReport report, TextWriter output)
    {
        if (report.Device is { Error: null } device)
        {
            output.WriteLine($"Backend: {device.Description}");
            output.WriteLine($"GRPO advantages of rewards [{string.Join(", ", InfoDeviceCheck.Rewards.Select(r => r.ToString(CultureInfo.InvariantCulture)))}]: " +
                             $"[{string.Join(", ", device.GrpoAdvantages!.Select(a => a.ToString("F4", CultureInfo.InvariantCulture)))}]");
            if (device.DeviceWork is not null)
                output.WriteLine($"Device work for that check: {device.DeviceWork}; debug sync {(device.DebugSync == true ? "on (a wait after every launch)" : "off")}");
        }

        if (report.World is { } world)
            output.WriteLine(world.WorldSize == 1
                ? $"World: 1 process ({world.Transport}; start ranks with mpirun -np N)"
                : world.Error is { } why
                    ? $"World: {world.WorldSize} ranks announced by the launcher, but: {why}"
                    : $"World: {world.WorldSize} ranks over {world.Transport} ({(world.AnyThread ? "any thread, one at a time: host gradients may be summed during the backward" : "one thread: host gradients summed after the backward")}), this is rank {world.Rank}; collectives check " +
                      $"{(world.Passed ? "passed" : "FAILED")} (max |error| {world.CheckMaxError}, different sizes {(world.MismatchRefused == true ? "refused on every rank" : "NOT refused")})");
        output.WriteLine("Backends on this machine:");
        BackendTable.Write(output, report.Backends);

        var files = report.KernelFiles;
        output.WriteLine($"Kernel files ({files.Directory}):");
        output.WriteLine(files.PrebuiltPtx.Count == 0
            ? "  prebuilt PTX: none (the Cuda backend compiles the sources with NVRTC)"
            : $"  prebuilt PTX: {string.Join(", ", files.PrebuiltPtx.Select(a => $"{a.Name} ({a.PtxFiles} files)"))}");
        output.WriteLine($"  CUDA sources for NVRTC: {files.CudaSources} files");
        output.WriteLine($"  emulator library: {files.EmulatorLibrary ?? "not found (the Emu backend is unavailable)"}");
        var cuda = report.CudaLibraries;
        output.WriteLine($"CUDA libraries: driver {cuda.Driver ?? "not found"}, NVRTC {cuda.Nvrtc ?? "not found"}, cuBLAS {cuda.Cublas ?? "not found"}, NCCL {cuda.Nccl ?? "not found"}");
    }

    /// <summary>"cpu (MatMul: 1.0e+0 > 1.0e-4)" for each started backend whose op check failed; empty when none did.</summary>
    public static IReadOnlyList<string> Failures(InfoReport report) =>
        report.Backends.Where(b => b.Starts && b.Check is not { Passed: true }).Select(b =>
        {
            var check = b.Check!;
            string why = check.Error ?? string.Join(", ", check.Ops.Where(o => !o.Passed)
                .Select(o => $"{o.Op}: {BackendTable.Number(o.MaxDifference)} > {BackendTable.Number(o.Tolerance)}"));
            return $"{b.Name} ({why})";
        }).Concat(report.World is { Passed: false } w
            ? [$"the collectives of rank {w.Rank} of {w.WorldSize} ({w.Error ?? $"max |error| {w.CheckMaxError}, different sizes refused: {w.MismatchRefused}"})"]
            : []).ToList();
}
