using OR1.Native.Kernels;

namespace OR1.Native.Cuda;

/// <summary>
/// The kernels of kernels/*.cu on an NVIDIA GPU (sm_80 and newer), launched through our own bindings to
/// the CUDA driver API, with GEMMs on cuBLAS. Tensors live in device memory: read them with Download.
/// Ops are asynchronous on one stream; <see cref="IBackend.Synchronize"/> waits for them. Stores Float32 or
/// BFloat16 (every kernel exists for both; the tensors' dtype picks), always computing in fp32.
/// </summary>
public sealed class CudaBackend : KernelBackend
{
    /// <summary>
    /// Opens GPU <paramref name="device"/> (default: OR1_CUDA_DEVICE, else under mpirun the rank's index on its machine, else 0). No driver, no device, no cuBLAS (unless
    /// <see cref="CudaOptions.BuiltinGemm"/>) or no way to load the kernels is a <see cref="BackendUnavailableException"/>
    /// that says which.
    /// </summary>
    public CudaBackend(int? device = null, CudaOptions? options = null)
        : base(CudaRuntime.Create(device ?? DefaultDevice(), options ?? CudaOptions.Default), hostVisibleMemory: false)
    {
    }

    /// <summary>The CUDA stream every op of this backend is queued on (NCCL's collectives join it).</summary>
    internal nint Stream => ((CudaRuntime)DeviceRuntime).Stream;

    /// <summary>The second stream, for collectives that run beside the ops (made at first use).</summary>
    internal nint SideStream => ((CudaRuntime)DeviceRuntime).SideStream;

    /// <summary>What is queued on <see cref="SideStream"/> from now on starts after every op queued so far.</summary>
    internal void SideWaitsForMain() => ((CudaRuntime)DeviceRuntime).SideWaitsForMain();

    /// <summary>The ops queued from now on start after everything queued on <see cref="SideStream"/> so far.</summary>
    internal void MainWaitsForSide() => ((CudaRuntime)DeviceRuntime).MainWaitsForSide();

    /// <summary>
    /// OR1_CUDA_DEVICE when set; else, as one of several MPI ranks, the rank's index on its machine (one GPU per rank, as
    /// NCCL requires: a rank beyond the machine's GPUs is refused naming both counts); else 0.
    /// </summary>
    internal static int DefaultDevice() =>
        int.TryParse(Environment.GetEnvironmentVariable("OR1_CUDA_DEVICE"), out int d) ? d
        : Distributed.Collectives.LauncherWorldSize() > 1 && Distributed.Collectives.LauncherLocalRank() is { } local ? local
        : 0;

    /// <inheritdoc />
    public override BackendKind Kind => BackendKind.Cuda;

    /// <inheritdoc />
    public override string Description => ((CudaRuntime)Runtime).Description;

    /// <inheritdoc />
    public override BackendFacts Facts()
    {
        var runtime = (CudaRuntime)Runtime;
        return new BackendFacts(Kind, Description, StorageTypes, runtime.KernelSource, Gpu: runtime.Facts());
    }

    /// <summary>Device milliseconds that <paramref name="work"/> (ops issued on this backend) takes, from CUDA events.</summary>
    public float TimeMilliseconds(Action work) => ((CudaRuntime)Runtime).Time(work);

    /// <summary>True when a CUDA device can be opened here; otherwise <paramref name="reason"/> says why not.</summary>
    public static bool TryProbe(out string reason)
    {
        try
        {
            using var backend = new CudaBackend();
            reason = backend.Description;
            return true;
        }
        catch (BackendUnavailableException e)
        {
            reason = e.Message;
            return false;
        }
    }
}
