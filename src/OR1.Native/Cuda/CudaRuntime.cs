using System.Text;
using OR1.Native.Kernels;

namespace OR1.Native.Cuda;

/// <summary>
/// <see cref="IKernelRuntime"/> on an NVIDIA GPU through our driver-API bindings: the device's primary
/// context (made current on whichever thread calls), one non-blocking stream that orders every launch,
/// copy and GEMM, the kernel modules, and a cuBLAS handle on the same stream: fp32 GEMMs through cublasSgemm
/// (or cublasGemmEx with TF32 when <see cref="CudaOptions.Tf32"/>), bf16 GEMMs through cublasGemmEx with fp32
/// accumulation. Without cuBLAS the backend does not start, unless <see cref="CudaOptions.BuiltinGemm"/> asks for
/// the gemm kernels of kernels/gemm.cu.
/// </summary>
internal sealed unsafe class CudaRuntime : IKernelRuntime
{
    private readonly int _device;
    private readonly nint _context;
    private readonly nint _stream;
    private readonly nint _cublas;
    private readonly CudaModules _modules;
    // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES as this runtime last raised it, per kernel.
    private readonly Dictionary<string, int> _sharedAttribute = new(StringComparer.Ordinal);
    private readonly int _capability;
    private readonly bool _tf32;
    // The device's facts as read at start-up; free memory is asked again whenever they are.
    private readonly GpuFacts _facts;
    private bool _disposed;
    private readonly ulong _cublasWorkspace;

    /// <summary>The workspace given to cuBLAS (cublasSetWorkspace).</summary>
    private const int CublasWorkspaceBytes = 32 << 20;

    private CudaRuntime(int device, nint context, nint stream, nint cublas, ulong cublasWorkspace, CudaModules modules, string description,
        int multiprocessors, int sharedOptIn, int capability, bool tf32, GpuFacts facts)
    {
        _cublasWorkspace = cublasWorkspace;
        _facts = facts;
        _tf32 = tf32;
        _capability = capability;
        _device = device;
        _context = context;
        _stream = stream;
        _cublas = cublas;
        _modules = modules;
        Description = description;
        GridStrideBlocks = Math.Max(1, multiprocessors) * 8;
        MaxDynamicSharedMemory = sharedOptIn;
    }

    public BackendKind Kind => BackendKind.Cuda;

    public string Description { get; }

    public int GridStrideBlocks { get; }

    public int RowThreads => 256;

    public long LogitTileFloats => 32L << 20;

    public int VocabChunk => 8192;

    public long BuiltinGemms => Interlocked.Read(ref _builtinGemms);
    private long _builtinGemms;

    public long FreeMemoryBytes
    {
        get
        {
            MakeCurrent();
            CudaErrors.Driver(CudaDriver.cuMemGetInfo(out nuint free, out _), "cuMemGetInfo");
            return (long)free;
        }
    }

    public int MaxDynamicSharedMemory { get; }

    /// <summary>Where the kernels were loaded from (prebuilt cubin or PTX, or NVRTC).</summary>
    public string KernelSource => _modules.Source;

    /// <summary>The device's facts with its free memory as of now (null if the driver will not say).</summary>
    public GpuFacts Facts()
    {
        long? free;
        try
        {
            free = FreeMemoryBytes;
        }
        catch (CudaException)
        {
            free = null;
        }
        // NVRTC is asked here rather than at start-up, which loads it only when the kernels need it.
        return _facts with { FreeMemoryBytes = free, NvrtcVersion = CudaLibraryVersions.NvrtcVersion() };
    }

    /// <summary>The stream every operation is issued on.</summary>
    public nint Stream => _stream;

    /// <summary>
    /// Opens device <paramref name="ordinal"/>. A missing driver library, a driver without devices, or an
    /// ordinal beyond the device count is a <see cref="BackendUnavailableException"/> naming the cause.
    /// </summary>
    public static CudaRuntime Create(int ordinal, CudaOptions options)
    {
        int rc;
        try
        {
            rc = CudaDriver.cuInit(0);
        }
        catch (DllNotFoundException e)
        {
            throw new BackendUnavailableException(BackendKind.Cuda,
                $"no CUDA driver: none of {CudaLibraries.Describe(CudaLibraries.Driver)} could be loaded (install the NVIDIA driver)", e);
        }
        catch (EntryPointNotFoundException e)
        {
            throw new BackendUnavailableException(BackendKind.Cuda, $"the CUDA driver library is too old: {e.Message}", e);
        }
        if (rc != 0)
            throw new BackendUnavailableException(BackendKind.Cuda,
                rc == 100 ? "no CUDA device: the driver is installed but reports no GPU (CUDA_ERROR_NO_DEVICE)"
                          : $"the CUDA driver did not initialise: cuInit returned {CudaDriver.ErrorName(rc)} ({rc})");
        CudaErrors.Driver(CudaDriver.cuDeviceGetCount(out int count), "cuDeviceGetCount");
        if (count == 0) throw new BackendUnavailableException(BackendKind.Cuda, "no CUDA device: cuDeviceGetCount returned 0");
        if (ordinal < 0 || ordinal >= count)
            throw new BackendUnavailableException(BackendKind.Cuda, $"device {ordinal} was requested, but there are {count} CUDA device(s)" +
                (Distributed.Collectives.LauncherWorldSize() > 1
                    ? " (under mpirun each rank takes the GPU of its index on its machine: start at most as many ranks per machine as GPUs, or set OR1_CUDA_DEVICE)"
                    : ""));
        CudaErrors.Driver(CudaDriver.cuDeviceGet(out int device, ordinal), "cuDeviceGet");
        byte* nameBuffer = stackalloc byte[256];
        CudaErrors.Driver(CudaDriver.cuDeviceGetName(nameBuffer, 256, device), "cuDeviceGetName");
        string name = new string((sbyte*)nameBuffer);
        CudaErrors.Driver(CudaDriver.cuDeviceGetAttribute(out int major, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device), "cuDeviceGetAttribute");
        CudaErrors.Driver(CudaDriver.cuDeviceGetAttribute(out int minor, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device), "cuDeviceGetAttribute");
        CudaErrors.Driver(CudaDriver.cuDeviceGetAttribute(out int sms, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device), "cuDeviceGetAttribute");
        CudaErrors.Driver(CudaDriver.cuDeviceGetAttribute(out int sharedOptIn, CudaDriver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device), "cuDeviceGetAttribute");
        CudaErrors.Driver(CudaDriver.cuDeviceTotalMem(out nuint totalMemory, device), "cuDeviceTotalMem");
        CudaErrors.Driver(CudaDriver.cuDriverGetVersion(out int driverVersion), "cuDriverGetVersion");
        int capability = major * 10 + minor;
        if (capability < 80)
            throw new BackendUnavailableException(BackendKind.Cuda, $"{name} has compute capability {major}.{minor}; the kernels target sm_80 and newer");

        CudaErrors.Driver(CudaDriver.cuDevicePrimaryCtxRetain(out nint context, device), "cuDevicePrimaryCtxRetain");
        nint stream = 0, cublas = 0;
        ulong workspace = 0;
        CudaModules? modules = null;
        try
        {
            CudaErrors.Driver(CudaDriver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
            CudaErrors.Driver(CudaDriver.cuStreamCreate(out stream, CudaDriver.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
            string gemm;
            string? cublasVersionText = null;
            if (options.BuiltinGemm)
            {
                gemm = "the builtin gemm kernels (gemm: builtin)";
            }
            else
            {
                try
                {
                    CudaErrors.Cublas(Cublas.cublasCreate(out cublas), "cublasCreate");
                    CudaErrors.Cublas(Cublas.cublasSetStream(cublas, stream), "cublasSetStream");
                    // cuBLAS's own workspace, set once: a GEMM captured into a graph must not allocate one (NVIDIA's advice
                    // for graphs: 32 MiB on Hopper, which covers the smaller needs of earlier parts).
                    CudaErrors.Driver(CudaDriver.cuMemAlloc(out workspace, (nuint)CublasWorkspaceBytes), "cuMemAlloc (cuBLAS workspace)");
                    CudaErrors.Cublas(Cublas.cublasSetWorkspace(cublas, (nint)workspace, (nuint)CublasWorkspaceBytes), "cublasSetWorkspace");
                    cublasVersionText = Cublas.cublasGetVersion(cublas, out int cublasVersion) == 0 ? CudaLibraryVersions.FormatCublas(cublasVersion) : "(version unknown)";
                    gemm = $"cuBLAS {cublasVersionText}{(options.Tf32 ? ", TF32 for fp32" : "")}";
                }
                catch (DllNotFoundException e)
                {
                    throw new BackendUnavailableException(BackendKind.Cuda,
                        $"cuBLAS could not be loaded (tried {CudaLibraries.Describe(CudaLibraries.Cublas)}); every GEMM runs on it. " +
                        "Install the CUDA toolkit's libcublas, or choose the (slow) builtin GEMM kernels with gemm: builtin", e);
                }
            }
            try
            {
                modules = CudaModules.Load(capability);
            }
            catch (DllNotFoundException e)
            {
                throw new BackendUnavailableException(BackendKind.Cuda,
                    $"no prebuilt PTX for sm_{capability} next to OR1.Native.dll and no NVRTC ({CudaLibraries.Describe(CudaLibraries.Nvrtc)}) to compile kernels/src", e);
            }
            string driver = CudaLibraryVersions.FormatDriver(driverVersion);
            string description = $"Cuda ({name}, sm_{capability}, {sms} SMs, {totalMemory / (1UL << 20)} MiB, driver {driver}; kernels: {modules.Source}; GEMM: {gemm})";
            var facts = new GpuFacts(name, ordinal, sms, major, minor, (long)totalMemory, null, driver, null, cublasVersionText);
            return new CudaRuntime(device, context, stream, cublas, workspace, modules, description, sms, sharedOptIn, capability, options.Tf32, facts);
        }
        catch
        {
            modules?.Dispose();
            if (cublas != 0) Cublas.cublasDestroy(cublas);
            if (workspace != 0) CudaDriver.cuMemFree(workspace);
            if (stream != 0) CudaDriver.cuStreamDestroy(stream);
            CudaDriver.cuDevicePrimaryCtxRelease(device);
            throw;
        }
    }

    /// <summary>
    /// Makes the primary context current on the calling thread, whatever ran there before: a thread-pool thread that
    /// never saw this device, or one where ILGPU (or any other CUDA user) left its own context current. The driver is
    /// asked, not a cache: a cached answer goes stale when another library switches contexts behind our back.
    /// </summary>
    private void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (CudaDriver.cuCtxGetCurrent(out nint current) == 0 && current == _context) return;
        CudaErrors.Driver(CudaDriver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
    }

    public void Launch(string kernel, Dim3 grid, Dim3 block, int sharedBytes, ref KernelArgs args)
    {
        MakeCurrent();
        nint function;
        try
        {
            function = _modules.Function(kernel);
        }
        catch (CudaException e)
        {
            throw new KernelException(BackendKind.Cuda, kernel, e.Message, e);
        }
        void** pointers = stackalloc void*[Math.Max(1, args.Count)];
        fixed (KernelArgs* a = &args)
        {
            a->GetPointers(pointers);
            int rc = CudaDriver.cuLaunchKernel(function, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, (uint)sharedBytes, _stream, pointers, null);
            if (rc != 0)
                throw new KernelException(BackendKind.Cuda, kernel,
                    $"cuLaunchKernel(grid {grid}, block {block}, {sharedBytes} B shared) returned {CudaDriver.ErrorName(rc)} ({rc}){SharedMemoryCause(kernel, sharedBytes)}");
        }
    }

    /// <summary>Why a failed launch was refused when its dynamic shared memory broke the driver's rule (the emulator's words), else "".</summary>
    private string SharedMemoryCause(string kernel, int sharedBytes)
    {
        int limit;
        lock (_sharedAttribute) limit = _sharedAttribute.GetValueOrDefault(kernel, SharedMemoryLimits.DefaultDynamicBytes);
        if (sharedBytes > MaxDynamicSharedMemory) return ": " + SharedMemoryLimits.LaunchAboveDevice(sharedBytes, MaxDynamicSharedMemory, _capability);
        if (sharedBytes > limit) return ": " + SharedMemoryLimits.LaunchAboveLimit(sharedBytes, limit);
        return "";
    }

    public void EnsureDynamicSharedMemory(string kernel, int bytes)
    {
        MakeCurrent();
        lock (_sharedAttribute)
        {
            // Only ever raised: a launch of the same kernel with less shared memory stays within it.
            if (_sharedAttribute.TryGetValue(kernel, out int set) && set >= bytes) return;
            if (bytes > MaxDynamicSharedMemory)
                throw new KernelException(BackendKind.Cuda, kernel, SharedMemoryLimits.AttributeAboveDevice(bytes, MaxDynamicSharedMemory, _capability));
            int rc = CudaDriver.cuFuncSetAttribute(_modules.Function(kernel), CudaDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
            if (rc != 0)
                throw new KernelException(BackendKind.Cuda, kernel,
                    $"cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, {bytes}) returned {CudaDriver.ErrorName(rc)} ({rc}) " +
                    $"(the kernel's static __shared__ arrays count against the device's {MaxDynamicSharedMemory} bytes too)");
            _sharedAttribute[kernel] = bytes;
        }
    }

    public void Gemm(GemmTypes types, bool transA, bool transB, int m, int n, int k, float alpha, nint a, int lda, long strideA,
        nint b, int ldb, long strideB, float beta, nint c, int ldc, long strideC, int batch)
    {
        MakeCurrent();
        if (_cublas == 0 || k == 0)
        {
            Interlocked.Increment(ref _builtinGemms);
            // gemm: builtin, or k = 0 (C = beta C, with beta = 0 ignoring NaN), which the tiled kernel handles without
            // relying on cuBLAS's corner cases.
            var args = new KernelArgs();
            Launch(types.BuiltinKernel, new Dim3((uint)((n + 15) / 16), (uint)((m + 15) / 16), (uint)batch), new Dim3(16, 16), 0,
                ref args.Int(transA ? 1 : 0).Int(transB ? 1 : 0).Int(m).Int(n).Int(k).Float(alpha)
                    .Ptr(a).Int(lda).Long(strideA).Ptr(b).Int(ldb).Long(strideB).Float(beta).Ptr(c).Int(ldc).Long(strideC));
            return;
        }
        var call = CublasGemm.FromRowMajor(transA, transB, m, n, k, lda, ldb, ldc);
        string function;
        int rc;
        if (types == GemmTypes.Float32 && !_tf32)
        {
            function = batch == 1 ? "cublasSgemm" : "cublasSgemmStridedBatched";
            rc = batch == 1
                ? Cublas.cublasSgemm(_cublas, call.TransFirst, call.TransSecond, call.M, call.N, call.K, &alpha,
                    (ulong)b, call.LdFirst, (ulong)a, call.LdSecond, &beta, (ulong)c, call.Ldc)
                : Cublas.cublasSgemmStridedBatched(_cublas, call.TransFirst, call.TransSecond, call.M, call.N, call.K, &alpha,
                    (ulong)b, call.LdFirst, strideB, (ulong)a, call.LdSecond, strideA, &beta, (ulong)c, call.Ldc, strideC, batch);
        }
        else
        {
            // bf16 inputs (and TF32 fp32): cublasGemmEx with fp32 accumulation; alpha and beta are floats (compute type 32F).
            int input = Cublas.DataType(types.Inputs), output = Cublas.DataType(types.Output);
            int compute = types.Inputs == DType.Float32 ? Cublas.CUBLAS_COMPUTE_32F_FAST_TF32 : Cublas.CUBLAS_COMPUTE_32F;
            function = batch == 1 ? "cublasGemmEx" : "cublasGemmStridedBatchedEx";
            rc = batch == 1
                ? Cublas.cublasGemmEx(_cublas, call.TransFirst, call.TransSecond, call.M, call.N, call.K, &alpha,
                    (ulong)b, input, call.LdFirst, (ulong)a, input, call.LdSecond, &beta, (ulong)c, output, call.Ldc, compute, Cublas.CUBLAS_GEMM_DEFAULT)
                : Cublas.cublasGemmStridedBatchedEx(_cublas, call.TransFirst, call.TransSecond, call.M, call.N, call.K, &alpha,
                    (ulong)b, input, call.LdFirst, strideB, (ulong)a, input, call.LdSecond, strideA, &beta, (ulong)c, output, call.Ldc, strideC,
                    batch, compute, Cublas.CUBLAS_GEMM_DEFAULT);
        }
        if (rc != 0) throw new KernelException(BackendKind.Cuda, function, $"{CudaErrors.CublasName(rc)} ({rc}) for {types} m={m} n={n} k={k}");
    }

    public nint Allocate(long bytes)
    {
        MakeCurrent();
        nuint size = (nuint)Math.Max(256, bytes);
        int rc = CudaDriver.cuMemAlloc(out ulong pointer, size);
        if (rc == 2) throw new OutOfMemoryException($"CUDA: could not allocate {bytes} bytes of device memory (CUDA_ERROR_OUT_OF_MEMORY)");
        CudaErrors.Driver(rc, "cuMemAlloc");
        CudaErrors.Driver(CudaDriver.cuMemsetD8Async(pointer, 0, size, _stream), "cuMemsetD8Async");
        return (nint)pointer;
    }

    public void Free(nint pointer)
    {
        if (_disposed || pointer == 0) return; // the context's memory went with it
        MakeCurrent();
        CudaDriver.cuMemFree((ulong)pointer);
    }

    public void CopyHostToDevice(void* source, nint destination, long bytes)
    {
        MakeCurrent();
        // Pageable source: the driver stages it before returning, so the caller may reuse it at once.
        CudaErrors.Driver(CudaDriver.cuMemcpyHtoDAsync((ulong)destination, source, (nuint)bytes, _stream), "cuMemcpyHtoDAsync");
    }

    public void CopyDeviceToHost(nint source, void* destination, long bytes)
    {
        MakeCurrent();
        CudaErrors.Driver(CudaDriver.cuMemcpyDtoHAsync(destination, (ulong)source, (nuint)bytes, _stream), "cuMemcpyDtoHAsync");
        Synchronize();
    }

    public void CopyDeviceToDevice(nint source, nint destination, long bytes)
    {
        MakeCurrent();
        CudaErrors.Driver(CudaDriver.cuMemcpyDtoDAsync((ulong)destination, (ulong)source, (nuint)bytes, _stream), "cuMemcpyDtoDAsync");
    }

    public void CopyDeviceToHostAsync(nint source, void* pinnedDestination, long bytes)
    {
        MakeCurrent();
        CudaErrors.Driver(CudaDriver.cuMemcpyDtoHAsync(pinnedDestination, (ulong)source, (nuint)bytes, _stream), "cuMemcpyDtoHAsync");
    }

    public nint AllocatePinnedHost(long bytes)
    {
        MakeCurrent();
        CudaErrors.Driver(CudaDriver.cuMemAllocHost(out nint pointer, (nuint)Math.Max(64, bytes)), "cuMemAllocHost");
        return pointer;
    }

    public void FreePinnedHost(nint pointer)
    {
        if (_disposed || pointer == 0) return;
        MakeCurrent();
        CudaDriver.cuMemFreeHost(pointer);
    }

    /// <summary>Waits for everything queued on the stream, and on the side stream when there is one.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        SynchronizeStream(_stream, "stream");
        if (_sideStream != 0) SynchronizeStream(_sideStream, "side stream");
    }

    private static void SynchronizeStream(nint stream, string which)
    {
        int rc = CudaDriver.cuStreamSynchronize(stream);
        if (rc != 0)
            throw new KernelException(BackendKind.Cuda, "cuStreamSynchronize",
                $"an earlier kernel, copy or collective on the {which} failed: {CudaDriver.ErrorName(rc)} ({rc})");
    }

    // ---------------------------------------------------------------- the side stream

    // A second stream for work that runs beside the ops (the gradients' collectives during the backward), and the two
    // events that order it against the main stream; made at first use.
    private nint _sideStream, _sideAfterMain, _mainAfterSide;

    /// <summary>
    /// The side stream: what is queued there runs concurrently with the main stream's ops, ordered against them only by
    /// <see cref="SideWaitsForMain"/> and <see cref="MainWaitsForSide"/>. Made at first use.
    /// </summary>
    public nint SideStream
    {
        get
        {
            MakeCurrent();
            if (_sideStream != 0) return _sideStream;
            CudaErrors.Driver(CudaDriver.cuStreamCreate(out nint side, CudaDriver.CU_STREAM_NON_BLOCKING), "cuStreamCreate (side stream)");
            CudaErrors.Driver(CudaDriver.cuEventCreate(out _sideAfterMain, CudaDriver.CU_EVENT_DISABLE_TIMING), "cuEventCreate");
            CudaErrors.Driver(CudaDriver.cuEventCreate(out _mainAfterSide, CudaDriver.CU_EVENT_DISABLE_TIMING), "cuEventCreate");
            return _sideStream = side;
        }
    }

    /// <summary>What is queued on the side stream from now on starts after everything queued on the main stream so far.</summary>
    public void SideWaitsForMain()
    {
        // SideStream first: it makes the events on first use.
        nint side = SideStream;
        Order(_stream, _sideAfterMain, side);
    }

    /// <summary>What is queued on the main stream from now on starts after everything queued on the side stream so far.</summary>
    public void MainWaitsForSide()
    {
        nint side = SideStream;
        Order(side, _mainAfterSide, _stream);
    }

    // One event per direction is enough: cuStreamWaitEvent waits for the event's latest record as of the call, so the
    // event may be recorded again right after.
    private static void Order(nint before, nint evt, nint after)
    {
        CudaErrors.Driver(CudaDriver.cuEventRecord(evt, before), "cuEventRecord");
        CudaErrors.Driver(CudaDriver.cuStreamWaitEvent(after, evt, 0), "cuStreamWaitEvent");
    }

    // ---------------------------------------------------------------- graphs

    private bool _capturing;

    public bool Capturing => _capturing;

    public void BeginCapture()
    {
        MakeCurrent();
        CudaErrors.Driver(CudaDriver.cuStreamBeginCapture(_stream, CudaDriver.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture");
        _capturing = true;
    }

    public IDeviceGraph EndCapture()
    {
        MakeCurrent();
        _capturing = false;
        CudaErrors.Driver(CudaDriver.cuStreamEndCapture(_stream, out nint graph), "cuStreamEndCapture");
        try
        {
            nuint count = 0;
            CudaErrors.Driver(CudaDriver.cuGraphGetNodes(graph, null, ref count), "cuGraphGetNodes");
            CudaErrors.Driver(CudaDriver.cuGraphInstantiateWithFlags(out nint exec, graph, 0), "cuGraphInstantiateWithFlags");
            return new CudaGraph(this, graph, exec, (int)count);
        }
        catch
        {
            CudaDriver.cuGraphDestroy(graph);
            throw;
        }
    }

    /// <summary>An instantiated CUDA graph of this runtime's stream.</summary>
    private sealed class CudaGraph(CudaRuntime runtime, nint graph, nint exec, int nodes) : IDeviceGraph
    {
        private nint _graph = graph, _exec = exec;

        public int Nodes => nodes;

        public bool IsCurrent => _exec != 0;

        public void Replay()
        {
            ObjectDisposedException.ThrowIf(_exec == 0, this);
            runtime.MakeCurrent();
            CudaErrors.Driver(CudaDriver.cuGraphLaunch(_exec, runtime._stream), "cuGraphLaunch");
        }

        public void Dispose()
        {
            if (_exec == 0 || runtime._disposed) return; // the context's graphs went with it
            runtime.MakeCurrent();
            CudaDriver.cuGraphExecDestroy(_exec);
            CudaDriver.cuGraphDestroy(_graph);
            _exec = _graph = 0;
        }
    }

    /// <summary>Milliseconds of device time that <paramref name="work"/> takes on the stream (CUDA events).</summary>
    public float Time(Action work)
    {
        MakeCurrent();
        CudaErrors.Driver(CudaDriver.cuEventCreate(out nint start, CudaDriver.CU_EVENT_DEFAULT), "cuEventCreate");
        CudaErrors.Driver(CudaDriver.cuEventCreate(out nint end, CudaDriver.CU_EVENT_DEFAULT), "cuEventCreate");
        try
        {
            CudaErrors.Driver(CudaDriver.cuEventRecord(start, _stream), "cuEventRecord");
            work();
            CudaErrors.Driver(CudaDriver.cuEventRecord(end, _stream), "cuEventRecord");
            CudaErrors.Driver(CudaDriver.cuEventSynchronize(end), "cuEventSynchronize");
            CudaErrors.Driver(CudaDriver.cuEventElapsedTime(out float ms, start, end), "cuEventElapsedTime");
            return ms;
        }
        finally
        {
            CudaDriver.cuEventDestroy(start);
            CudaDriver.cuEventDestroy(end);
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        try
        {
            MakeCurrent();
            CudaDriver.cuStreamSynchronize(_stream);
            if (_sideStream != 0) CudaDriver.cuStreamSynchronize(_sideStream);
        }
        catch (CudaException)
        {
        }
        if (_sideStream != 0)
        {
            CudaDriver.cuEventDestroy(_sideAfterMain);
            CudaDriver.cuEventDestroy(_mainAfterSide);
            CudaDriver.cuStreamDestroy(_sideStream);
        }
        _modules.Dispose();
        if (_cublas != 0) Cublas.cublasDestroy(_cublas);
        if (_cublasWorkspace != 0) CudaDriver.cuMemFree(_cublasWorkspace);
        CudaDriver.cuStreamDestroy(_stream);
        _disposed = true;
        CudaDriver.cuDevicePrimaryCtxRelease(_device);
    }
}
