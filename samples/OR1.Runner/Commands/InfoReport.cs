using OR1.Native;
using OR1.Native.Cuda;

namespace OR1.Runner.Commands;

/// <summary>
/// Everything <c>or1 info</c> reports, printed as text (<see cref="InfoText"/>) or JSON (<see cref="InfoJson"/>): the
/// --device check when one was asked for, every backend (its facts and op check, or why it does not start), the kernel
/// files, and the CUDA libraries this process can load.
/// </summary>
/// <param name="Device">The check of --device; null without the option.</param>
/// <param name="Backends">Every backend of <see cref="OR1.Native.Backends.Names"/>, in that order.</param>
/// <param name="KernelFiles">The kernel files beside OR1.Native.dll.</param>
/// <param name="CudaLibraries">The CUDA driver, NVRTC and cuBLAS versions (null: not loadable).</param>
/// <param name="World">The ranks this process runs among (mpirun) and the check of their collectives; null when not collected.</param>
public sealed record InfoReport(InfoDeviceCheck? Device, IReadOnlyList<BackendReport> Backends, InfoKernelFiles KernelFiles, CudaLibraryVersions CudaLibraries,
    InfoWorld? World = null)
{
    /// <summary>Every backend that started passed its op check (one that does not start fails nothing), and the world's collectives theirs.</summary>
    public bool ChecksPassed => Backends.All(b => !b.Starts || b.Check is { Passed: true }) && World is null or { Passed: true };

    /// <summary>
    /// 1 when a backend that started failed its op check; else 2 when the --device backend does not start (as the other
    /// commands' --device error); else 0.
    /// </summary>
    public int ExitCode => !ChecksPassed ? 1 : Device?.Error is not null ? 2 : 0;

    /// <summary>Runs the --device check (when <paramref name="device"/> is given), then every backend's.</summary>
    /// <param name="device">The backend of today's check, or null.</param>
    /// <param name="beforeCompare">A test seam: sees (and may change) each backend's op results before they are compared.</param>
    public static InfoReport Collect(string? device = null, Action<string, string, float[]>? beforeCompare = null)
    {
        // The ranks first: under mpirun every rank joins the world and checks the collectives with the others.
        var world = InfoWorld.Collect();
        var check = device is null ? null : InfoDeviceCheck.Run(device);
        return new InfoReport(check, OR1.Native.Backends.Inspect(beforeCompare), InfoKernelFiles.Find(), CudaLibraryVersions.Probe(), world);
    }
}
