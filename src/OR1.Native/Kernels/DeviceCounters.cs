namespace OR1.Native.Kernels;

/// <summary>
/// What a kernel backend has asked of its device since it was created: kernel launches (GEMMs counted apart),
/// host synchronisations (a blocking copy to the host or an explicit wait), device allocations and frees, and
/// copies each way, and how many GEMMs ran on the builtin kernel (gemm.cu) rather than cuBLAS: all of them on the
/// emulator; on a GPU only the k = 0 corner or a missing cuBLAS, so a step that shows any is not on the fast path.
/// Subtract two snapshots to see what one step or one decoded token costs; the tests hold the
/// hot paths to their budgets with it (a round trip per op is what makes a GPU wait on the host).
/// </summary>
public readonly record struct DeviceCounters(
    long Launches,
    long Gemms,
    long Synchronizations,
    long Allocations,
    long Frees,
    long HostToDeviceCopies,
    long DeviceToHostCopies,
    long BuiltinGemms = 0)
{
    /// <summary>The counts between <paramref name="before"/> and <paramref name="after"/>.</summary>
    public static DeviceCounters operator -(DeviceCounters after, DeviceCounters before) => new(
        after.Launches - before.Launches,
        after.Gemms - before.Gemms,
        after.Synchronizations - before.Synchronizations,
        after.Allocations - before.Allocations,
        after.Frees - before.Frees,
        after.HostToDeviceCopies - before.HostToDeviceCopies,
        after.DeviceToHostCopies - before.DeviceToHostCopies,
        after.BuiltinGemms - before.BuiltinGemms);

    /// <inheritdoc />
    public override string ToString() =>
        $"{Launches} launches + {Gemms} GEMMs{(BuiltinGemms > 0 ? $" ({BuiltinGemms} on the builtin kernel)" : "")}, {Synchronizations} synchronisations, {Allocations} allocations ({Frees} frees), " +
        $"{HostToDeviceCopies} uploads, {DeviceToHostCopies} downloads";
}
