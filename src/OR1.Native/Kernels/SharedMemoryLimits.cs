namespace OR1.Native.Kernels;

/// <summary>
/// The driver's rules for a block's dynamic shared memory, for every kernel runtime: a launch may ask for
/// up to 48 KB; more only after the kernel's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES was raised
/// (cuFuncSetAttribute), which the device allows up to its opt-in maximum. Otherwise the launch fails with
/// CUDA_ERROR_INVALID_VALUE. <see cref="KernelLaunchers"/> applies the rule before each launch, the Cuda
/// runtime reports its failures in these words, and the emulator (kernels/emu/emu_runtime.cpp) enforces the
/// same rule with the same messages, word for word, so a launcher that forgets the opt-in fails in CI.
/// </summary>
/// <remarks>
/// On a GPU static <c>__shared__</c> arrays count too: static + dynamic must fit the attribute's budget
/// (the attribute itself may be at most the opt-in maximum minus the static size) and static alone at most
/// 48 KB. The emulator cannot see a kernel's static size, so there it is left to ptxas and the checks of
/// the compiled code; keep static arrays small (scratch for reductions) and put tiles in dynamic memory.
/// </remarks>
internal static class SharedMemoryLimits
{
    /// <summary>Dynamic shared memory any launch may use without opt-in: 48 KB.</summary>
    public const int DefaultDynamicBytes = 48 * 1024;

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN of an sm_80 device (A100): 163 KB.</summary>
    public const int Sm80OptInBytes = 163 * 1024;

    /// <summary>The same for sm_90 (H100, H200): 227 KB.</summary>
    public const int Sm90OptInBytes = 227 * 1024;

    private const string Attribute = "CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES";

    /// <summary>Whether a launch with <paramref name="dynamicBytes"/> must raise the kernel's attribute first.</summary>
    public static bool NeedsOptIn(int dynamicBytes) => dynamicBytes > DefaultDynamicBytes;

    /// <summary>The opt-in maximum of an architecture the kernels target (80 or 90).</summary>
    public static int OptInMaximum(int smVersion) => smVersion switch
    {
        80 => Sm80OptInBytes,
        90 => Sm90OptInBytes,
        _ => throw new ArgumentOutOfRangeException(nameof(smVersion), smVersion, "the kernels target sm_80 and sm_90"),
    };

    /// <summary>A launch asked for more than the kernel's attribute (<paramref name="limit"/>, 48 KB when never raised).</summary>
    public static string LaunchAboveLimit(long bytes, long limit) => limit == DefaultDynamicBytes
        ? $"launch with {bytes} bytes of dynamic shared memory, above the {limit} bytes a kernel may use by default; " +
          $"a GPU refuses it (CUDA_ERROR_INVALID_VALUE) unless the kernel's {Attribute} is set to at least {bytes} first " +
          "(cuFuncSetAttribute; IKernelRuntime.EnsureDynamicSharedMemory)"
        : $"launch with {bytes} bytes of dynamic shared memory, above the {limit} bytes its {Attribute} allows; " +
          $"a GPU refuses it (CUDA_ERROR_INVALID_VALUE) unless the attribute is raised to at least {bytes} first " +
          "(cuFuncSetAttribute; IKernelRuntime.EnsureDynamicSharedMemory)";

    /// <summary>A launch asked for more than the device allows at all.</summary>
    public static string LaunchAboveDevice(long bytes, int deviceMaximum, int smVersion) =>
        $"launch with {bytes} bytes of dynamic shared memory, above the {deviceMaximum} bytes per block that sm_{smVersion} allows " +
        $"even with {Attribute}; a GPU refuses it (CUDA_ERROR_INVALID_VALUE)";

    /// <summary>The attribute was asked above the device's opt-in maximum.</summary>
    public static string AttributeAboveDevice(long bytes, int deviceMaximum, int smVersion) =>
        $"{Attribute} = {bytes} is above the {deviceMaximum} bytes of shared memory per block that sm_{smVersion} allows with opt-in; " +
        "cuFuncSetAttribute refuses it (CUDA_ERROR_INVALID_VALUE)";
}
