using OR1.Native;
using OR1.Native.Cuda;
using OR1.Tests.Support;

namespace OR1.Tests.Cuda;

/// <summary>
/// The Cuda backend's own machinery on a real device (category Gpu; ignored with the reason elsewhere):
/// kernels loaded from prebuilt PTX and compiled by NVRTC agree, device timing works, memory is not
/// host-visible, a kernel fault is a typed error rather than a crash.
/// </summary>
[TestFixture]
[Category("Gpu")]
[NonParallelizable]
public sealed class CudaDeviceTests
{
    private static CudaBackend Open()
    {
        try
        {
            return new CudaBackend();
        }
        catch (BackendUnavailableException e)
        {
            if (Environment.GetEnvironmentVariable("OR1_REQUIRE_CUDA") == "1") Assert.Fail(e.Message);
            Assert.Ignore($"Cuda backend is not available on this machine: {e.Message}");
            throw;
        }
    }

    [Test]
    public void DeviceOpensWithItsDescriptionAndDeviceMemory()
    {
        using var gpu = Open();
        Assert.That(gpu.Description, Does.StartWith("Cuda (").And.Contain("sm_").And.Contain("kernels:"));
        using var t = gpu.Floats([1f, 2f, 3f], 3);
        Assert.That(t.IsHostVisible, Is.False);
        Assert.That(() => t.AsSpan<float>(), Throws.InvalidOperationException);
        Assert.That(t.ToFloats(), Is.EqualTo(new[] { 1f, 2f, 3f }));
    }

    [Test]
    public void FactsDescribeTheDeviceAndTheOpCheckPasses()
    {
        using var gpu = Open();
        var facts = gpu.Facts();
        Assert.That(facts.Kind, Is.EqualTo(BackendKind.Cuda));
        Assert.That(facts.Host, Is.Null);
        var device = facts.Gpu!;
        Assert.That(device.Name, Is.Not.Empty);
        Assert.That(device.Multiprocessors, Is.GreaterThan(0));
        Assert.That(device.ComputeCapabilityMajor * 10 + device.ComputeCapabilityMinor, Is.GreaterThanOrEqualTo(80));
        Assert.That(device.FreeMemoryBytes, Is.GreaterThan(0).And.LessThanOrEqualTo(device.TotalMemoryBytes));
        Assert.That(device.DriverVersion, Does.Match(@"^\d+\.\d$"));
        Assert.That(device.CublasVersion, Does.Match(@"^\d+\.\d+\.\d+$"), "the default GEMMs run on cuBLAS");
        Assert.That(facts.Kernels, Does.StartWith("prebuilt sm_").Or.StartWith("NVRTC ("));
        Assert.That(facts.StorageTypes, Is.EqualTo(new[] { DType.Float32, DType.BFloat16 }));

        using var cpu = new OR1.Native.Cpu.CpuBackend();
        var check = BackendCheck.Run(gpu, cpu);
        Assert.That(check.Passed, Is.True, string.Join(", ", check.Ops) + check.Error);
    }

    [Test]
    public void EventTimingMeasuresIssuedWork()
    {
        using var gpu = Open();
        using var x = gpu.Zeros(1 << 24);
        float ms = gpu.TimeMilliseconds(() =>
        {
            for (int i = 0; i < 10; i++) gpu.Scale(x, 1.5f);
        });
        Assert.That(ms, Is.GreaterThan(0f).And.LessThan(10_000f));
    }

    [Test]
    public void NvrtcCompiledKernelsAgreeWithThePrebuiltOnes()
    {
        using var prebuilt = Open();
        string? saved = Environment.GetEnvironmentVariable("OR1_CUDA_KERNELS");
        Environment.SetEnvironmentVariable("OR1_CUDA_KERNELS", "nvrtc");
        CudaBackend compiled;
        try
        {
            compiled = new CudaBackend();
        }
        catch (BackendUnavailableException e)
        {
            Assert.Ignore($"NVRTC is not available on this GPU machine: {e.Message}");
            return;
        }
        finally
        {
            Environment.SetEnvironmentVariable("OR1_CUDA_KERNELS", saved);
        }
        using (compiled)
        {
            Assert.That(compiled.Description, Does.Contain("NVRTC"));
            var heads = new AttentionHeads(8, 2, 64);
            int[] lengths = [50, 7];
            int n = lengths.Sum();
            var q = TestData.Normal(n * heads.QueryWidth, 1);
            var k = TestData.Normal(n * heads.KvWidth, 2);
            var v = TestData.Normal(n * heads.KvWidth, 3);
            float[] Run(IBackend b)
            {
                using var seqs = Segments.FromLengths(b, lengths);
                using var qt = b.Floats(q, n, heads.QueryWidth);
                using var kt = b.Floats(k, n, heads.KvWidth);
                using var vt = b.Floats(v, n, heads.KvWidth);
                using var y = b.Zeros(n, heads.QueryWidth);
                using var lse = b.Zeros(n, heads.NumHeads);
                b.AttentionForward(qt, kt, vt, seqs, heads, heads.DefaultScale, y, lse);
                return y.ToFloats();
            }
            TensorAssert.Close(Run(compiled), TestData.ToDouble(Run(prebuilt)), 1e-6, 1e-6, "NVRTC vs prebuilt attention");
        }
    }

    [Test]
    public void AnIndexErrorIsFoundByTheKernelAndRaisedAtTheNextWaitWithTheDeviceStillHealthy()
    {
        using var gpu = Open();
        using var table = gpu.Zeros(10, 4);
        using var ids = gpu.Ints([0, 3, 10], 3);
        using var output = gpu.Zeros(3, 4);
        var before = gpu.Counters;
        gpu.EmbeddingForward(ids, table, output);
        Assert.That((gpu.Counters - before).Synchronizations, Is.Zero, "the op waited for the host");
        var e = Assert.Throws<ArgumentException>(() => gpu.Synchronize())!;
        Assert.That(e.Message, Does.Contain("EmbeddingForward").And.Contain("id 10 at position 2"));
        Assert.That(output.ToFloats(), Is.All.EqualTo(0f)); // the device is still healthy and the bad row was not read
    }

    [Test]
    public void CallsFromOtherThreadsAndAfterAnotherContextWasMadeCurrentRunOnTheBackendsContext()
    {
        using var gpu = Open();
        using var x = gpu.Floats([1f, 2f, 3f, 4f], 4);
        // Another thread (a thread-pool thread, as a parallel reward or data loader would use) with no context of its own.
        float[] fromOtherThread = Task.Run(() =>
        {
            gpu.Scale(x, 2f);
            return x.ToFloats();
        }).GetAwaiter().GetResult();
        Assert.That(fromOtherThread, Is.EqualTo(new[] { 2f, 4f, 6f, 8f }));

        // Two threads issuing work one after the other on the same backend.
        var barrier = new Barrier(2);
        var first = new Thread(() => { barrier.SignalAndWait(); lock (gpu) gpu.Scale(x, 0.5f); });
        var second = new Thread(() => { barrier.SignalAndWait(); lock (gpu) gpu.Scale(x, 3f); });
        first.Start();
        second.Start();
        first.Join();
        second.Join();
        Assert.That(x.ToFloats(), Is.EqualTo(new[] { 3f, 6f, 9f, 12f }));

        // A thread where something else left no (or another) context current: unset it, then call.
        Assert.That(OR1.Native.Cuda.CudaDriver.cuCtxSetCurrent(0), Is.Zero);
        gpu.Scale(x, 1f / 3f);
        Assert.That(x.ToFloats(), Is.EqualTo(new[] { 1f, 2f, 3f, 4f }));
    }
}
