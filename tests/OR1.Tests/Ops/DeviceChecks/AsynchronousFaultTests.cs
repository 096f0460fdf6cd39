using OR1.Native;
using OR1.Native.Kernels;

namespace OR1.Tests.Ops.DeviceChecks;

/// <summary>
/// A kernel that faults on a GPU is only noticed when the host next waits. Without debug sync the message must say
/// which op was issued last and how to find the culprit, never blame the waiting call; with debug sync the launch
/// itself is waited for and its op named. The device is a stand-in whose wait fails, as a faulted stream's does.
/// </summary>
public sealed class AsynchronousFaultTests
{
    /// <summary>A device whose launches succeed and whose waits report a fault once <see cref="Faulted"/> is set.</summary>
    private sealed unsafe class FaultingDevice : IKernelRuntime
    {
        public bool Faulted { get; set; }
        public int Waits { get; private set; }
        public BackendKind Kind => BackendKind.Cuda;
        public int GridStrideBlocks => 4;
        public int RowThreads => 32;
        public long LogitTileFloats => 1024;
        public int VocabChunk => 64;
        public long FreeMemoryBytes => 1L << 30;
        public long BuiltinGemms => 0;
        public int MaxDynamicSharedMemory => 232448;
        public void Launch(string kernel, Dim3 grid, Dim3 block, int sharedBytes, ref KernelArgs args) { }
        public void EnsureDynamicSharedMemory(string kernel, int bytes) { }
        public void Gemm(GemmTypes types, bool transA, bool transB, int m, int n, int k, float alpha, nint a, int lda, long strideA,
            nint b, int ldb, long strideB, float beta, nint c, int ldc, long strideC, int batch) { }
        public nint Allocate(long bytes) => (nint)System.Runtime.InteropServices.NativeMemory.AllocZeroed((nuint)Math.Max(8, bytes));
        public void Free(nint pointer) => System.Runtime.InteropServices.NativeMemory.Free((void*)pointer);
        public void CopyHostToDevice(void* source, nint destination, long bytes) => Buffer.MemoryCopy(source, (void*)destination, bytes, bytes);
        public void CopyDeviceToHost(nint source, void* destination, long bytes)
        {
            Synchronize();
            Buffer.MemoryCopy((void*)source, destination, bytes, bytes);
        }
        public void CopyDeviceToHostAsync(nint source, void* pinnedDestination, long bytes) => Buffer.MemoryCopy((void*)source, pinnedDestination, bytes, bytes);
        public void CopyDeviceToDevice(nint source, nint destination, long bytes) => Buffer.MemoryCopy((void*)source, (void*)destination, bytes, bytes);
        public nint AllocatePinnedHost(long bytes) => Allocate(bytes);
        public void FreePinnedHost(nint pointer) => Free(pointer);
        public void Synchronize()
        {
            Waits++;
            if (Faulted) throw new KernelException(BackendKind.Cuda, "cuStreamSynchronize", "an earlier kernel or copy on the stream failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)");
        }
        public void BeginCapture() => throw new NotSupportedException("this stand-in device has no graphs");
        public IDeviceGraph EndCapture() => throw new NotSupportedException("this stand-in device has no graphs");
        public bool Capturing => false;
        public void Dispose() { }
    }

    [Test]
    public void WithoutDebugSyncTheFaultNamesTheLastOpIssuedAndSaysHowToFindTheCulprit()
    {
        var device = new FaultingDevice();
        using var runtime = new InstrumentedRuntime(device, debugSync: false);
        runtime.LastOp = "AttentionForward";
        var args = new KernelArgs();
        runtime.Launch("attention_forward_bf16_d128", 1, 32, 0, ref args);
        Assert.That(device.Waits, Is.Zero, "a launch waited for the device without debug sync");
        device.Faulted = true;
        runtime.LastOp = "SwiGluForward";
        var e = Assert.Throws<KernelException>(() => runtime.Synchronize())!;
        Assert.That(e.Message, Does.Contain("after op SwiGluForward was issued").And.Contain("may come from an earlier op")
            .And.Contain("--debug-sync").And.Contain("OR1_DEBUG_SYNC=1").And.Contain("CUDA_ERROR_ILLEGAL_ADDRESS"));
        Assert.That(runtime.Counters.Synchronizations, Is.EqualTo(1));
        Assert.That(runtime.Counters.Launches, Is.EqualTo(1));
    }

    [Test]
    public void WithDebugSyncEveryLaunchIsWaitedForAndTheFailingOpNamed()
    {
        var device = new FaultingDevice();
        using var runtime = new InstrumentedRuntime(device, debugSync: true);
        runtime.LastOp = "RmsNormForward";
        var args = new KernelArgs();
        runtime.Launch("rmsnorm_forward_f32", 1, 32, 0, ref args);
        Assert.That(device.Waits, Is.EqualTo(1));
        device.Faulted = true;
        runtime.LastOp = "AttentionBackward";
        var e = Assert.Throws<KernelException>(() => runtime.Launch("attention_backward_dkv_bf16_d128", 1, 128, 0, ref args))!;
        Assert.That(e.Message, Does.Contain("op AttentionBackward failed in attention_backward_dkv_bf16_d128 (debug sync)"));
        Assert.That(e.Message, Does.Not.Contain("may come from an earlier op"));
    }

    [Test]
    public void TheEnvironmentSwitchTurnsDebugSyncOnForNewBackends()
    {
        string? saved = Environment.GetEnvironmentVariable("OR1_DEBUG_SYNC");
        try
        {
            Environment.SetEnvironmentVariable("OR1_DEBUG_SYNC", "1");
            Assert.That(KernelBackend.DebugSyncRequested(), Is.True);
            Environment.SetEnvironmentVariable("OR1_DEBUG_SYNC", null);
            Assert.That(KernelBackend.DebugSyncRequested(), Is.False);
        }
        finally
        {
            Environment.SetEnvironmentVariable("OR1_DEBUG_SYNC", saved);
        }
    }
}
