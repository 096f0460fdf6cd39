using OR1.Native.Kernels;

namespace OR1.Native.Emu;

/// <summary>
/// The CUDA kernels of kernels/*.cu, compiled for the host against the execution-model emulator in
/// kernels/emu and run on the CPU: each CUDA thread is a fiber, barriers and warp shuffles are real
/// rendezvous points, blocks run on a small pool of host threads. Memory is host memory (tensors are
/// host-visible). It exists so that the CUDA kernels' numerics are tested on machines without a GPU; it
/// is slow, and its results follow the GPU kernels', not the Cpu backend's, to fp32 rounding.
/// </summary>
public sealed class EmuBackend : KernelBackend
{
    /// <summary>Loads libor1_emu; throws <see cref="BackendUnavailableException"/> when it is not built.</summary>
    /// <param name="shapes">
    /// <see cref="EmuLaunchShapes.Host"/> (default) picks launch shapes that emulate fast;
    /// <see cref="EmuLaunchShapes.Gpu"/> uses the Cuda backend's (256-thread rows, H200 grid sizes, its
    /// log-prob tiling), so those exact launch configurations are tested without a GPU.
    /// </param>
    public EmuBackend(EmuLaunchShapes shapes = EmuLaunchShapes.Host) : base(new EmuRuntime(shapes), hostVisibleMemory: true)
    {
    }

    /// <summary>The launch shapes this backend uses.</summary>
    public EmuLaunchShapes Shapes => ((EmuRuntime)Runtime).Shapes;

    /// <inheritdoc />
    public override BackendKind Kind => BackendKind.Emu;

    /// <inheritdoc />
    public override string Description => $"Emu (CUDA kernels on the host emulator as sm_{DeviceArchitecture}, {Shapes} launch shapes, {((EmuRuntime)Runtime).LibraryPath})";

    /// <inheritdoc />
    public override BackendFacts Facts()
    {
        var runtime = (EmuRuntime)Runtime;
        int arch = runtime.DeviceArchitecture;
        return new BackendFacts(Kind, Description, StorageTypes,
            $"kernels/*.cu compiled for the host against the CUDA execution-model emulator: {runtime.LibraryPath}",
            Host: HostFacts.ForThisCpu(runtime.Threads, arch,
                $"emulates sm_{arch}: {runtime.MaxDynamicSharedMemory:N0} B of shared memory per block (opt-in), {Shapes} launch shapes, each CUDA thread a fiber"));
    }

    /// <summary>
    /// Runs the threads of each block in descending instead of ascending order between barriers: a kernel
    /// whose result changes is racy (a GPU would leave the order undefined). Process-wide.
    /// </summary>
    public void SetReverseSchedule(bool reverse) => ((EmuRuntime)Runtime).SetReverseSchedule(reverse);

    /// <summary>
    /// The emulated GPU architecture: 90 (H100/H200, the default, or the OR1_EMU_ARCH environment variable)
    /// or 80 (A100). It fixes how much shared memory a kernel may opt into (227 KB or 163 KB per block), so
    /// launch shapes can be checked against either target. Process-wide.
    /// </summary>
    public int DeviceArchitecture
    {
        get => ((EmuRuntime)Runtime).DeviceArchitecture;
        set => ((EmuRuntime)Runtime).SetDeviceArchitecture(value);
    }

    /// <summary>The kernels the emulation library holds.</summary>
    public static IReadOnlyList<string> KernelNames() => EmuLibrary.KernelNames();
}

/// <summary>Which launch shapes the Emu backend's launchers use.</summary>
public enum EmuLaunchShapes
{
    /// <summary>Shapes that emulate fast: one warp per row, few grid-stride blocks.</summary>
    Host,
    /// <summary>The Cuda backend's shapes on an H200: 256-thread rows, 1056 grid-stride blocks, its log-prob tiles.</summary>
    Gpu,
}
