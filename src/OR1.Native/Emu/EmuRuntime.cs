using System.Runtime.InteropServices;
using System.Text;
using OR1.Native.Kernels;

namespace OR1.Native.Emu;

/// <summary>
/// <see cref="IKernelRuntime"/> over libor1_emu: host memory stands in for device memory, launches run
/// synchronously on the emulator's block pool, and GEMMs run the gemm_f32 kernel.
/// </summary>
internal sealed unsafe class EmuRuntime : IKernelRuntime
{
    private readonly EmuLibrary.Api _api;
    private readonly Dictionary<string, nint> _kernels = new(StringComparer.Ordinal);
    private readonly object _lock = new();

    public EmuRuntime(EmuLaunchShapes shapes = EmuLaunchShapes.Host)
    {
        _api = EmuLibrary.Get();
        Shapes = shapes;
        if (shapes == EmuLaunchShapes.Gpu)
        {
            // Exactly the Cuda runtime's choices on an H200 (132 SMs), so its launch shapes run here too.
            GridStrideBlocks = 132 * 8;
            RowThreads = 256;
            LogitTileFloats = 32L << 20;
            VocabChunk = 8192;
        }
        else
        {
            // Two blocks per emulator thread and one warp per row: the fewest fibers to switch. Small
            // log-prob tiles, so that even the tests' vocabularies span several chunks and row blocks.
            GridStrideBlocks = Math.Max(1, _api.Threads()) * 2;
            RowThreads = 32;
            LogitTileFloats = 1 << 16;
            VocabChunk = 512;
        }
    }

    public EmuLaunchShapes Shapes { get; }

    public BackendKind Kind => BackendKind.Emu;

    /// <summary>Where the library was loaded from.</summary>
    public string LibraryPath => _api.Path;

    public int GridStrideBlocks { get; }

    public int RowThreads { get; }

    public long LogitTileFloats { get; }

    public int VocabChunk { get; }

    public long BuiltinGemms => Interlocked.Read(ref _builtinGemms);
    private long _builtinGemms;

    /// <summary>The host memory the process may still use: the emulator's device memory is host memory.</summary>
    public long FreeMemoryBytes
    {
        get
        {
            var gc = GC.GetGCMemoryInfo();
            return Math.Max(0, gc.TotalAvailableMemoryBytes - gc.MemoryLoadBytes);
        }
    }

    /// <summary>The emulated device's opt-in maximum of shared memory per block (sm_90: 232,448 bytes; sm_80: 166,912).</summary>
    public int MaxDynamicSharedMemory => _api.MaxSharedOptIn();

    /// <summary>Host threads the emulator runs blocks on.</summary>
    public int Threads => _api.Threads();

    /// <summary>The emulated device architecture (90 unless set otherwise; process-wide).</summary>
    public int DeviceArchitecture => _api.DeviceArch();

    internal nint Find(string kernel)
    {
        lock (_lock)
        {
            if (_kernels.TryGetValue(kernel, out nint handle)) return handle;
            byte[] name = Encoding.UTF8.GetBytes(kernel + "\0");
            fixed (byte* p = name) handle = _api.FindKernel(p);
            if (handle == 0) throw new KernelException(BackendKind.Emu, kernel, $"no such kernel in {_api.Path}; is the library older than kernels/?");
            _kernels[kernel] = handle;
            return handle;
        }
    }

    public void Launch(string kernel, Dim3 grid, Dim3 block, int sharedBytes, ref KernelArgs args)
    {
        if (Recording)
        {
            // The arguments are copied by value, as cuLaunchKernel copies them into the graph's node.
            Find(kernel); // an unknown kernel fails at capture, as on the device
            var copy = args;
            _capture!.Add(new EmuGraph.Node(kernel, grid, block, sharedBytes, copy, 0, 0, 0));
            return;
        }
        nint handle = Find(kernel);
        int count = args.Count;
        void** pointers = stackalloc void*[Math.Max(1, count)];
        fixed (KernelArgs* a = &args)
        {
            a->GetPointers(pointers);
            int rc = _api.LaunchKernel(handle, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, (uint)sharedBytes, pointers, count, a->Sizes);
            if (rc != 0) throw new KernelException(BackendKind.Emu, kernel, EmuLibrary.LastError(_api));
        }
    }

    public void EnsureDynamicSharedMemory(string kernel, int bytes)
    {
        // The attribute lives in the library, process-wide (as a function's attribute lives in the primary
        // context), so it is read back rather than remembered here: it only ever needs raising.
        nint handle = Find(kernel);
        if (_api.GetMaxDynamicShared(handle) >= bytes) return;
        if (_api.SetMaxDynamicShared(handle, bytes) != 0) throw new KernelException(BackendKind.Emu, kernel, EmuLibrary.LastError(_api));
    }

    /// <summary>
    /// Emulates an sm_80 (A100) or sm_90 (H100/H200) device: it fixes the opt-in maximum of shared memory
    /// per block. Process-wide; <see cref="ArgumentOutOfRangeException"/> for another architecture.
    /// </summary>
    public void SetDeviceArchitecture(int smVersion)
    {
        if (_api.SetDeviceArch(smVersion) != 0)
            throw new ArgumentOutOfRangeException(nameof(smVersion), smVersion, EmuLibrary.LastError(_api));
    }

    public void Gemm(GemmTypes types, bool transA, bool transB, int m, int n, int k, float alpha, nint a, int lda, long strideA,
        nint b, int ldb, long strideB, float beta, nint c, int ldc, long strideC, int batch)
    {
        Interlocked.Increment(ref _builtinGemms);
        var args = new KernelArgs();
        var grid = new Dim3((uint)((n + 15) / 16), (uint)((m + 15) / 16), (uint)batch);
        Launch(types.BuiltinKernel, grid, new Dim3(16, 16), 0,
            ref args.Int(transA ? 1 : 0).Int(transB ? 1 : 0).Int(m).Int(n).Int(k).Float(alpha)
                .Ptr(a).Int(lda).Long(strideA).Ptr(b).Int(ldb).Long(strideB).Float(beta).Ptr(c).Int(ldc).Long(strideC));
    }

    /// <summary>
    /// cuMemAlloc's alignment (256 bytes) and the exact size asked: posix_memalign, not NativeMemory.AlignedAlloc, which
    /// rounds the size up to the alignment and so would hide a kernel's access past the end from the memcheck build of
    /// the emulator (AddressSanitizer places its redzone right after the bytes malloc was asked for).
    /// </summary>
    public nint Allocate(long bytes)
    {
        RefuseWhileRecording("an allocation (cuMemAlloc)");
        nuint size = (nuint)Math.Max(1, bytes);
        void* memory;
        if (s_posixMemalign(&memory, DeviceAllocationAlignment, size) != 0 || memory is null)
            throw new OutOfMemoryException($"could not allocate {bytes} bytes of emulated device memory");
        NativeMemory.Clear(memory, size);
        return (nint)memory;
    }

    public void Free(nint pointer)
    {
        RefuseWhileRecording("a free (cuMemFree)");
        NativeMemory.Free((void*)pointer);
    }

    private const nuint DeviceAllocationAlignment = 256;

    // Looked up in the process's global scope (as free() is), not in libc.so.6 itself: under the memcheck build the
    // preloaded ASan runtime's posix_memalign comes first there, and libc's own would hand ASan's free() memory it
    // never allocated.
    private static readonly delegate* unmanaged<void**, nuint, nuint, int> s_posixMemalign =
        (delegate* unmanaged<void**, nuint, nuint, int>)NativeLibrary.GetExport(NativeLibrary.GetMainProgramHandle(), "posix_memalign");

    public void CopyHostToDevice(void* source, nint destination, long bytes)
    {
        RefuseWhileRecording("a copy from pageable host memory");
        Buffer.MemoryCopy(source, (void*)destination, bytes, bytes);
    }

    public void CopyDeviceToHost(nint source, void* destination, long bytes)
    {
        RefuseWhileRecording("a blocking copy to the host");
        Buffer.MemoryCopy((void*)source, destination, bytes, bytes);
    }

    public void CopyDeviceToDevice(nint source, nint destination, long bytes)
    {
        if (Recording)
        {
            _capture!.Add(new EmuGraph.Node(null, default, default, 0, default, source, destination, bytes));
            return;
        }
        Buffer.MemoryCopy((void*)source, (void*)destination, bytes, bytes);
    }

    // Emulated kernels have finished when Launch returns, so the "asynchronous" copy is done at once.
    public void CopyDeviceToHostAsync(nint source, void* pinnedDestination, long bytes)
    {
        if (Recording)
        {
            // A copy into page-locked memory is a memcpy node of the graph.
            _capture!.Add(new EmuGraph.Node(null, default, default, 0, default, source, (nint)pinnedDestination, bytes));
            return;
        }
        Buffer.MemoryCopy((void*)source, pinnedDestination, bytes, bytes);
    }

    public nint AllocatePinnedHost(long bytes) => Allocate(bytes);

    public void FreePinnedHost(nint pointer) => Free(pointer);

    public void Synchronize() => RefuseWhileRecording("a synchronisation (cuStreamSynchronize)");

    // ---------------------------------------------------------------- graphs

    private List<EmuGraph.Node>? _capture;
    private int _captureThread;

    /// <summary>True on the capturing thread while a capture is open (thread-local capture mode).</summary>
    private bool Recording => _capture is not null && Environment.CurrentManagedThreadId == _captureThread;

    public bool Capturing => _capture is not null;

    public void BeginCapture()
    {
        if (_capture is not null) throw new KernelException(BackendKind.Emu, "cuStreamBeginCapture", "a capture is already open on this stream (CUDA_ERROR_ILLEGAL_STATE)");
        _capture = [];
        _captureThread = Environment.CurrentManagedThreadId;
    }

    public IDeviceGraph EndCapture()
    {
        if (_capture is null) throw new KernelException(BackendKind.Emu, "cuStreamEndCapture", "no capture is open on this stream (CUDA_ERROR_ILLEGAL_STATE)");
        var graph = new EmuGraph(this, _capture);
        _capture = null;
        return graph;
    }

    /// <summary>Runs a recorded node (a kernel launch or a copy).</summary>
    internal void Run(in EmuGraph.Node node)
    {
        if (node.Kernel is null)
        {
            Buffer.MemoryCopy((void*)node.Source, (void*)node.Destination, node.Bytes, node.Bytes);
            return;
        }
        var args = node.Args;
        Launch(node.Kernel, node.Grid, node.Block, node.SharedBytes, ref args);
    }

    /// <summary>What the driver refuses inside a stream capture, refused here with its words.</summary>
    private void RefuseWhileRecording(string what)
    {
        if (Recording)
            throw new KernelException(BackendKind.Emu, "stream capture",
                $"{what} is not allowed while the stream is being captured into a graph (CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED); " +
                "do it before BeginCapture or after EndCapture");
    }

    /// <summary>Selects the emulator's thread order inside blocks (false: ascending, true: descending).</summary>
    public void SetReverseSchedule(bool reverse) => _api.SetSchedule(reverse ? 1 : 0);

    public void Dispose() { }
}
