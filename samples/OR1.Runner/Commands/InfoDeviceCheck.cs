using OR1.Native;
using OR1.Native.Kernels;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary>
/// The check of <c>or1 info --device X</c>, as it was before the backend table: GRPO advantages of the rewards
/// [1, 0, 1, 1] on that backend, and on the CUDA-kernel backends the device work it took and whether debug sync is on
/// (what --debug-sync turns on is visible here).
/// </summary>
/// <param name="Backend">The name given to --device.</param>
/// <param name="Description">The backend's description; null when it does not start.</param>
/// <param name="GrpoAdvantages">The advantages it computed; null when it does not start.</param>
/// <param name="DeviceWork">Launches, synchronisations, allocations and copies of the check, on a kernel backend; else null.</param>
/// <param name="DebugSync">Whether debug sync is on, on a kernel backend; else null.</param>
/// <param name="Error">Why the backend does not start; null when it does.</param>
public sealed record InfoDeviceCheck(string Backend, string? Description, float[]? GrpoAdvantages, string? DeviceWork, bool? DebugSync, string? Error)
{
    /// <summary>The rewards of the check: one group of four.</summary>
    public static IReadOnlyList<float> Rewards { get; } = [1f, 0f, 1f, 1f];

    /// <summary>
    /// Runs the check on <paramref name="device"/>. An unknown name is the <see cref="CliException"/> of --device; a
    /// backend that does not start is a result with <see cref="Error"/>, so the table is still printed.
    /// </summary>
    public static InfoDeviceCheck Run(string device)
    {
        Devices.RequireKnown(device);
        IBackend backend;
        try
        {
            backend = Backends.Create(device);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new InfoDeviceCheck(device, null, null, null, null, e.Message);
        }
        using (backend)
        {
            using var rewards = backend.Allocate(DType.Float32, new TensorShape(Rewards.Count), "rewards");
            using var advantages = backend.Allocate(DType.Float32, new TensorShape(Rewards.Count), "advantages");
            using var groups = Segments.FromLengths(backend, [Rewards.Count]);
            backend.Upload<float>(Rewards.ToArray(), rewards);
            backend.GrpoAdvantages(rewards, groups, 1e-6f, advantages);
            var result = new float[Rewards.Count];
            backend.Download<float>(advantages, result);
            var kernels = backend as KernelBackend;
            return new InfoDeviceCheck(device, backend.Description, result, kernels?.Counters.ToString(), kernels?.DebugSync, null);
        }
    }
}
