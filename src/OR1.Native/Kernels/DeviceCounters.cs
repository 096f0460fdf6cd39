namespace OR1.Native.Kernels;

/// <summary>
/// What a kernel backend has asked of its device since it was created: kernel launches (GEMMs counted apart),
/// host synchronisations (a blocking copy to the host or an explicit wait), device allocations and frees, and
/// copies each way. Subtract two snapshots to see what one step or one decoded token costs; the tests hold the
/// hot paths to their budgets with it (a round trip per op is what makes a GPU wait on the host).
/// </summary>
public readonly record struct DeviceCounters(
    long Launches,
    long Gemms,
    long Synchronizations,
    long Allocations,
    long Frees,
    long HostToDeviceCopies,
    long DeviceToHostCopies)
{
    /// <summary>The counts between <paramref name="before"/> and <paramref name="after"/>.</summary>
    public static DeviceCounters operator -(DeviceCounters after, DeviceCounters before) => new(
        after.Launches - before.Launches,
        after.Gemms - before.Gemms,
        after.Synchronizations - before.Synchronizations,
        after.Allocations - before.Allocations,
        after.Frees - before.Frees,
        after.HostToDeviceCopies - before.HostToDeviceCopies,
        after.DeviceToHostCopies - before.DeviceToHostCopies);

    /// <inheritdoc />
    public override string ToString() =>
        $"{Launches} launches + {Gemms} GEMMs, {Synchronizations} synchronisations, {Allocations} allocations ({Frees} frees), " +
        $"{HostToDeviceCopies} uploads, {DeviceToHostCopies} downloads";
}
