namespace OR1.Native.Kernels;

/// <summary>
/// What <see cref="KernelLaunchers"/> needs from a device: launch a kernel of kernels/*.cu by name,
/// run a GEMM, and move device memory. Two implementations: the CUDA driver (cuLaunchKernel, cuBLAS)
/// and the host emulator (or1_emu_launch, the gemm_f32 kernel), so every launcher is written once.
/// Operations are ordered (one stream); copies to the host wait for what was issued before them.
/// </summary>
internal interface IKernelRuntime : IDisposable
{
    /// <summary>The backend this runtime serves (for messages).</summary>
    BackendKind Kind { get; }

    /// <summary>Blocks that a grid-stride kernel should be launched with to fill the device.</summary>
    int GridStrideBlocks { get; }

    /// <summary>Threads for kernels that give a block to each row (a multiple of 32).</summary>
    int RowThreads { get; }

    /// <summary>Logit-tile budget of the chunked log-prob, in floats, and its vocabulary chunk.</summary>
    long LogitTileFloats { get; }

    /// <summary>Vocabulary columns per log-prob chunk.</summary>
    int VocabChunk { get; }

    /// <summary>GEMMs run so far on the builtin kernel (gemm.cu) instead of cuBLAS: every one on the emulator.</summary>
    long BuiltinGemms { get; }

    /// <summary>Device memory free now, in bytes (cuMemGetInfo; the emulator: the host memory the process may still use).</summary>
    long FreeMemoryBytes { get; }

    /// <summary>Launches a kernel; throws <see cref="KernelException"/> when the launch fails.</summary>
    void Launch(string kernel, Dim3 grid, Dim3 block, int sharedBytes, ref KernelArgs args);

    /// <summary>
    /// Shared memory per block the device allows a kernel with opt-in (CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN):
    /// 232,448 bytes on sm_90, 166,912 on sm_80.
    /// </summary>
    int MaxDynamicSharedMemory { get; }

    /// <summary>
    /// Raises <paramref name="kernel"/>'s CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES to at least
    /// <paramref name="bytes"/> (never lowers it), which a launch with more than 48 KB of dynamic shared
    /// memory needs first (see <see cref="SharedMemoryLimits"/>); throws <see cref="KernelException"/> above
    /// <see cref="MaxDynamicSharedMemory"/>.
    /// </summary>
    void EnsureDynamicSharedMemory(string kernel, int bytes);

    /// <summary>
    /// Row-major strided-batched GEMM: C_i = alpha op(A_i) op(B_i) + beta C_i, op(A) [m, k], op(B) [k, n],
    /// C [m, n], in the element types <paramref name="types"/> (strides and leading dimensions in elements);
    /// beta = 0 ignores C's contents.
    /// </summary>
    void Gemm(GemmTypes types, bool transA, bool transB, int m, int n, int k, float alpha, nint a, int lda, long strideA,
        nint b, int ldb, long strideB, float beta, nint c, int ldc, long strideC, int batch);

    /// <summary>Allocates zero-filled device memory.</summary>
    nint Allocate(long bytes);

    /// <summary>Frees memory from <see cref="Allocate"/>.</summary>
    void Free(nint pointer);

    unsafe void CopyHostToDevice(void* source, nint destination, long bytes);

    /// <summary>Waits for the work issued before, then copies.</summary>
    unsafe void CopyDeviceToHost(nint source, void* destination, long bytes);

    void CopyDeviceToDevice(nint source, nint destination, long bytes);

    /// <summary>
    /// Queues a copy into page-locked host memory from <see cref="AllocatePinnedHost"/> and returns at once: the bytes
    /// are there after the next blocking copy or <see cref="Synchronize"/> (the stream orders them).
    /// </summary>
    unsafe void CopyDeviceToHostAsync(nint source, void* pinnedDestination, long bytes);

    /// <summary>Page-locked host memory that the device can copy into without a wait (cuMemAllocHost).</summary>
    nint AllocatePinnedHost(long bytes);

    /// <summary>Frees memory from <see cref="AllocatePinnedHost"/>.</summary>
    void FreePinnedHost(nint pointer);

    /// <summary>Waits until every issued operation has finished.</summary>
    void Synchronize();

    /// <summary>
    /// Starts recording this thread's launches, GEMMs and device-to-device copies on the stream instead of running them
    /// (CU_STREAM_CAPTURE_MODE_THREAD_LOCAL). Until <see cref="EndCapture"/>, what a capture cannot hold throws, as the
    /// driver refuses it: an allocation or free, a copy from or to pageable host memory, a synchronisation.
    /// </summary>
    void BeginCapture();

    /// <summary>Ends the recording and returns it, instantiated, ready to replay.</summary>
    IDeviceGraph EndCapture();

    /// <summary>True between <see cref="BeginCapture"/> and <see cref="EndCapture"/>.</summary>
    bool Capturing { get; }
}
