using OR1.Native;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.DeviceChecks;

/// <summary>
/// What the GPU check's proof of path reads: which GEMM implementation ran (the builtin gemm.cu kernel on the
/// emulator always; on a GPU only for the k = 0 corner, cuBLAS otherwise), and the device memory a backend holds and
/// its peak (what a training step costs in memory).
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class DeviceCountersTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private KernelBackend Kernels => (KernelBackend)Backend;

    [Test]
    public void GemmsAreCountedWithTheOnesOnTheBuiltinKernel()
    {
        var a = Floats(TestData.Uniform(12, 1), 3, 4);
        var b = Floats(TestData.Uniform(20, 2), 4, 5);
        var c = Zeros(3, 5);
        var empty = Zeros(3, 0);
        var emptyB = Zeros(0, 5);
        var before = Kernels.Counters;
        Backend.MatMul(a, false, b, false, c);
        Backend.MatMul(empty, false, emptyB, false, c); // k = 0: C = 0, on the builtin kernel everywhere
        var used = Kernels.Counters - before;
        Assert.That(used.Gemms, Is.EqualTo(2));
        Assert.That(used.BuiltinGemms, Is.EqualTo(Backend.Kind == BackendKind.Emu ? 2 : 1),
            "the emulator has only the builtin kernel; a GPU runs cuBLAS unless k = 0");
        Assert.That(used.ToString(), Does.Contain("on the builtin kernel"));
    }

    [Test]
    public void DeviceBytesFollowAllocationsAndKeepTheirPeak()
    {
        Kernels.ResetPeakDeviceBytes();
        var (start, startPeak) = Kernels.DeviceBytes;
        Assert.That(startPeak, Is.EqualTo(start), "a reset starts the peak at the bytes in use");
        const long bytes = 1L << 20;
        using (Backend.Allocate(DType.Float32, new TensorShape((int)(bytes / 4))))
        {
            var (inUse, peak) = Kernels.DeviceBytes;
            Assert.That(inUse - start, Is.GreaterThanOrEqualTo(bytes));
            Assert.That(peak, Is.EqualTo(inUse));
        }
        var (after, afterPeak) = Kernels.DeviceBytes;
        Assert.That(after, Is.EqualTo(start), "freeing gives the bytes back");
        Assert.That(afterPeak - start, Is.GreaterThanOrEqualTo(bytes), "the peak remembers the allocation");
        Kernels.ResetPeakDeviceBytes();
        Assert.That(Kernels.DeviceBytes.Peak, Is.EqualTo(after));
    }
}
