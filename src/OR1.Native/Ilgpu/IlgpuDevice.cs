using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace OR1.Native.Ilgpu;

/// <summary>Marks a static method as an ILGPU kernel of this backend (the PTX compile test finds them by it).</summary>
[AttributeUsage(AttributeTargets.Method)]
internal sealed class IlgpuKernelAttribute : Attribute;

/// <summary>
/// Launch geometry chosen per accelerator. Kernels read the warp size and group size at run time
/// (Warp.WarpSize, Group.DimX) and size their shared memory for the largest profile, so one kernel body
/// serves a CUDA device (warps of 32, groups of 256) and ILGPU's CPU simulator, where every simulated
/// thread is an OS thread and every barrier or shuffle is a context switch, so groups are a couple of
/// small warps and grid-stride loops keep the number of groups low.
/// </summary>
internal sealed record IlgpuLaunchProfile(
    int WarpSize,
    int BlockThreads,
    int MaxGroups,
    int GemmThreadsPerSide,
    int GemmKTile,
    int AttentionWarps,
    int AttentionKeyTile,
    int AttentionBackwardWarps,
    int AttentionQueryTile,
    long ScratchFloats,
    int SamplingThreadRowVocabulary)
{
    /// <summary>Warps in a 1D group of <see cref="BlockThreads"/>.</summary>
    public int WarpsPerBlock => BlockThreads / WarpSize;

    /// <summary>Groups for a grid-stride loop over <paramref name="items"/> items of which one group takes <paramref name="perGroup"/> per pass.</summary>
    public int Groups(long items, long perGroup = 1) =>
        (int)Math.Clamp((items + perGroup - 1) / Math.Max(1, perGroup), 1, MaxGroups);

    public static IlgpuLaunchProfile For(Accelerator accelerator)
    {
        int warp = accelerator.WarpSize;
        if (accelerator.AcceleratorType == AcceleratorType.Cuda)
        {
            int sms = Math.Max(1, accelerator.NumMultiprocessors);
            return new IlgpuLaunchProfile(warp, BlockThreads: 256, MaxGroups: sms * 16, GemmThreadsPerSide: 16, GemmKTile: 16,
                AttentionWarps: 8, AttentionKeyTile: 32, AttentionBackwardWarps: 4, AttentionQueryTile: 32,
                ScratchFloats: 32L << 20, SamplingThreadRowVocabulary: 64);
        }
        // CPU simulator (or any other accelerator): groups of at most two warps, few groups.
        int block = Math.Min(accelerator.MaxNumThreadsPerGroup, 2 * warp);
        block = Math.Max(warp, block - block % warp);
        int side = 1;
        while ((side * 2) * (side * 2) <= block && side * 2 <= 16) side *= 2;
        int keyTile = Math.Min(IlgpuAttention.MaxKeyTile, Math.Max(warp, 2 * warp));
        return new IlgpuLaunchProfile(warp, block, MaxGroups: Math.Max(2, accelerator.NumMultiprocessors * 2), GemmThreadsPerSide: side,
            GemmKTile: 8, AttentionWarps: Math.Min(IlgpuAttention.MaxWarps, block / warp), AttentionKeyTile: keyTile - keyTile % warp,
            AttentionBackwardWarps: Math.Min(IlgpuAttention.MaxBackwardWarps, block / warp), AttentionQueryTile: keyTile - keyTile % warp,
            ScratchFloats: 1L << 14, SamplingThreadRowVocabulary: 64);
    }
}

/// <summary>
/// One ILGPU accelerator with its launch profile and the kernels compiled for it. Kernels are compiled on
/// first use and cached for the accelerator's lifetime, shared by every backend over it (tests create
/// many backends over one simulator and would otherwise recompile everything each time).
/// </summary>
internal sealed class IlgpuDevice
{
    private static readonly ConditionalWeakTable<Accelerator, IlgpuDevice> s_devices = new();

    private readonly ConcurrentDictionary<MethodInfo, Delegate> _kernels = new();

    private IlgpuDevice(Accelerator accelerator)
    {
        Accelerator = accelerator;
        Profile = IlgpuLaunchProfile.For(accelerator);
    }

    public Accelerator Accelerator { get; }

    public IlgpuLaunchProfile Profile { get; }

    public static IlgpuDevice For(Accelerator accelerator) => s_devices.GetValue(accelerator, a => new IlgpuDevice(a));

    private Delegate Add(MethodInfo method, Delegate loaded) => _kernels.GetOrAdd(method, loaded);

    /// <summary>Every kernel method of the backend, for the PTX compile check.</summary>
    public static IReadOnlyList<MethodInfo> AllKernelMethods() =>
        typeof(IlgpuDevice).Assembly.GetTypes()
            .Where(t => t.Namespace == typeof(IlgpuDevice).Namespace)
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
            .Where(m => m.GetCustomAttribute<IlgpuKernelAttribute>() is not null)
            .OrderBy(m => m.DeclaringType!.Name, StringComparer.Ordinal).ThenBy(m => m.Name, StringComparer.Ordinal)
            .ToArray();

    public Action<KernelConfig, T1> Load<T1>(Action<T1> kernel) where T1 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1>)loaded
            : (Action<KernelConfig, T1>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2> Load<T1, T2>(Action<T1, T2> kernel) where T1 : struct where T2 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2>)loaded
            : (Action<KernelConfig, T1, T2>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3> Load<T1, T2, T3>(Action<T1, T2, T3> kernel) where T1 : struct where T2 : struct where T3 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3>)loaded
            : (Action<KernelConfig, T1, T2, T3>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4> Load<T1, T2, T3, T4>(Action<T1, T2, T3, T4> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4, T5> Load<T1, T2, T3, T4, T5>(Action<T1, T2, T3, T4, T5> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4, T5>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4, T5>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6> Load<T1, T2, T3, T4, T5, T6>(Action<T1, T2, T3, T4, T5, T6> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4, T5, T6>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4, T5, T6>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> Load<T1, T2, T3, T4, T5, T6, T7>(Action<T1, T2, T3, T4, T5, T6, T7> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> Load<T1, T2, T3, T4, T5, T6, T7, T8>(Action<T1, T2, T3, T4, T5, T6, T7, T8> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct where T11 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct where T11 : struct where T12 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct where T11 : struct where T12 : struct where T13 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct where T11 : struct where T12 : struct where T13 : struct where T14 : struct =>
        _kernels.TryGetValue(kernel.Method, out var loaded)
            ? (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14>)loaded
            : (Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14>)Add(kernel.Method, Accelerator.LoadStreamKernel(kernel));
}
