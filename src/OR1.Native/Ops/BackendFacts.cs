namespace OR1.Native;

/// <summary>
/// What a started backend runs on, for diagnostics (<c>or1 info</c>, the GPU check): its description, the dtypes it
/// stores, where its kernels come from, and the facts of its device: <see cref="Gpu"/> on a CUDA device,
/// <see cref="Host"/> on the CPU and the emulators. Read when asked: free memory is as of that call.
/// </summary>
/// <param name="Kind">Which implementation the backend is.</param>
/// <param name="Description">The backend's one-line <see cref="IBackend.Description"/>.</param>
/// <param name="StorageTypes">The dtypes it stores (<see cref="IBackend.StorageTypes"/>): the precisions it runs.</param>
/// <param name="Kernels">
/// Where its kernels come from: prebuilt cubin or PTX (and the folder), NVRTC at start-up, ILGPU's compiler, the
/// emulation library, or managed code. A user whose GPU run is slow to start or fails to load a kernel reads it here.
/// </param>
/// <param name="Gpu">The CUDA device, for the backends on one (cuda, ilgpu-cuda); otherwise null.</param>
/// <param name="Host">The host CPU, for the backends that compute on it (cpu, emu, ilgpu-cpu); otherwise null.</param>
public sealed record BackendFacts(
    BackendKind Kind,
    string Description,
    IReadOnlyList<DType> StorageTypes,
    string Kernels,
    GpuFacts? Gpu = null,
    HostFacts? Host = null);
