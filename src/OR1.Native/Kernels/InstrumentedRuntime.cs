namespace OR1.Native.Kernels;

/// <summary>
/// The runtime every launcher talks to: it forwards to the device's <see cref="IKernelRuntime"/>, counts what is
/// asked of the device (<see cref="DeviceCounters"/>), remembers which op issued the last work, and in debug-sync
/// mode waits after every launch so that a failing kernel is named by its op (CUDA_LAUNCH_BLOCKING's role). Without
/// debug sync a fault surfaces at the next synchronisation, and the message says which op was issued last and how
/// to find the culprit, rather than blaming whichever call happened to wait.
/// </summary>
internal sealed unsafe class InstrumentedRuntime(IKernelRuntime device, bool debugSync) : IKernelRuntime
{
    private long _launches, _gemms, _syncs, _allocations, _frees, _uploads, _downloads;

    /// <summary>The device runtime underneath.</summary>
    public IKernelRuntime Device => device;

    /// <summary>The device-side index checks' record, looked at after every blocking read.</summary>
    public DeviceErrors Errors { get; } = new(device);

    /// <summary>Synchronise and check after every launch (--debug-sync, OR1_DEBUG_SYNC=1).</summary>
    public bool DebugSync { get; set; } = debugSync;

    /// <summary>The op whose work was issued last (set by the backend as each op starts).</summary>
    public string LastOp { get; set; } = "(none yet)";

    public DeviceCounters Counters => new(
        Interlocked.Read(ref _launches), Interlocked.Read(ref _gemms), Interlocked.Read(ref _syncs), Interlocked.Read(ref _allocations),
        Interlocked.Read(ref _frees), Interlocked.Read(ref _uploads), Interlocked.Read(ref _downloads), device.BuiltinGemms);

    /// <summary>Bytes of device memory this runtime has allocated and not freed, and their high-water mark since the last reset.</summary>
    public (long InUse, long Peak) DeviceBytes
    {
        get
        {
            lock (_sizes) return (_inUse, _peak);
        }
    }

    /// <summary>Starts a new high-water mark at the bytes in use now (before a phase whose peak is wanted).</summary>
    public void ResetPeakDeviceBytes()
    {
        lock (_sizes) _peak = _inUse;
    }

    // Sizes of the live allocations: device allocations are few (tensors, arenas, scratch that grows), so a locked
    // dictionary costs nothing next to the cuMemAlloc itself.
    private readonly Dictionary<nint, long> _sizes = [];
    private long _inUse, _peak;

    public BackendKind Kind => device.Kind;
    public int GridStrideBlocks => device.GridStrideBlocks;
    public int RowThreads => device.RowThreads;
    public long LogitTileFloats => device.LogitTileFloats;
    public int VocabChunk => device.VocabChunk;
    public long FreeMemoryBytes => device.FreeMemoryBytes;
    public long BuiltinGemms => device.BuiltinGemms;
    public int MaxDynamicSharedMemory => device.MaxDynamicSharedMemory;

    public void Launch(string kernel, Dim3 grid, Dim3 block, int sharedBytes, ref KernelArgs args)
    {
        Interlocked.Increment(ref _launches);
        device.Launch(kernel, grid, block, sharedBytes, ref args);
        if (DebugSync && !device.Capturing) SynchronizeAfter(kernel);
    }

    public void EnsureDynamicSharedMemory(string kernel, int bytes) => device.EnsureDynamicSharedMemory(kernel, bytes);

    public void Gemm(GemmTypes types, bool transA, bool transB, int m, int n, int k, float alpha, nint a, int lda, long strideA,
        nint b, int ldb, long strideB, float beta, nint c, int ldc, long strideC, int batch)
    {
        Interlocked.Increment(ref _gemms);
        device.Gemm(types, transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch);
        if (DebugSync && !device.Capturing) SynchronizeAfter($"GEMM {types} m={m} n={n} k={k}");
    }

    public nint Allocate(long bytes)
    {
        Interlocked.Increment(ref _allocations);
        nint pointer = device.Allocate(bytes);
        lock (_sizes)
        {
            _sizes[pointer] = bytes;
            _inUse += bytes;
            _peak = Math.Max(_peak, _inUse);
        }
        return pointer;
    }

    public void Free(nint pointer)
    {
        Interlocked.Increment(ref _frees);
        device.Free(pointer);
        lock (_sizes)
            if (_sizes.Remove(pointer, out long bytes)) _inUse -= bytes;
    }

    public void CopyHostToDevice(void* source, nint destination, long bytes)
    {
        Interlocked.Increment(ref _uploads);
        device.CopyHostToDevice(source, destination, bytes);
    }

    public void CopyDeviceToHost(nint source, void* destination, long bytes)
    {
        Interlocked.Increment(ref _downloads);
        Interlocked.Increment(ref _syncs);
        Errors.BeforeWait();
        try
        {
            device.CopyDeviceToHost(source, destination, bytes);
        }
        catch (KernelException e)
        {
            throw AsynchronousFault(e);
        }
        Errors.AfterWait();
    }

    public void CopyDeviceToHostAsync(nint source, void* pinnedDestination, long bytes)
    {
        Interlocked.Increment(ref _downloads);
        device.CopyDeviceToHostAsync(source, pinnedDestination, bytes);
    }

    public void CopyDeviceToDevice(nint source, nint destination, long bytes) => device.CopyDeviceToDevice(source, destination, bytes);

    public nint AllocatePinnedHost(long bytes) => device.AllocatePinnedHost(bytes);

    public void FreePinnedHost(nint pointer) => device.FreePinnedHost(pointer);

    public void Synchronize()
    {
        Interlocked.Increment(ref _syncs);
        Errors.BeforeWait();
        try
        {
            device.Synchronize();
        }
        catch (KernelException e)
        {
            throw AsynchronousFault(e);
        }
        Errors.AfterWait();
    }

    /// <summary>Debug sync: wait for <paramref name="what"/>, name its op when it failed, and raise what its checks found.</summary>
    private void SynchronizeAfter(string what)
    {
        Interlocked.Increment(ref _syncs);
        try
        {
            device.Synchronize();
        }
        catch (KernelException e)
        {
            throw new KernelException(device.Kind, what, $"op {LastOp} failed in {what} (debug sync): {e.Message}", e);
        }
        Errors.Drain();
    }

    private KernelException AsynchronousFault(KernelException e) =>
        DebugSync
            ? e
            : new KernelException(device.Kind, e.Kernel,
                $"a kernel failed after op {LastOp} was issued (the fault surfaced at this synchronisation and may come from an earlier op); " +
                $"rerun with --debug-sync (OR1_DEBUG_SYNC=1) to find which: {e.Message}", e);

    public void BeginCapture() => device.BeginCapture();

    public IDeviceGraph EndCapture() => device.EndCapture();

    public bool Capturing => device.Capturing;

    public void Dispose()
    {
        Errors.Dispose();
        device.Dispose();
    }
}
