using OR1.Native;
using OR1.Native.Cuda;
using OR1.Native.Distributed;
using OR1.Tests.Support;

namespace OR1.Tests.Distributed;

/// <summary>
/// The NCCL binding: without the library it loads cleanly and says what is missing (a typed error, not a crash); on a
/// GPU (the GPU check's tests) a one-GPU communicator's all-reduce, reduce-scatter, reduce and all-gather run on the backend's
/// stream and give their answers (the identity and copies for a world of one), in fp32 and bf16.
/// </summary>
public sealed class NcclTests
{
    [Test]
    public void WithoutTheLibraryTheBindingSaysWhatIsMissing()
    {
        string? version = NcclCollectives.Version(out string? missing);
        TestContext.Out.WriteLine(version is null ? $"no NCCL here: {missing}" : $"NCCL {version}");
        if (version is null)
        {
            Assert.That(missing, Does.Contain("no NCCL library").And.Contain("libnccl.so.2"));
            Assert.That(new NcclUnavailableException(missing!).Message, Is.EqualTo(missing));
        }
        else Assert.That(version, Does.Match(@"^2\.\d+\.\d+$"), "NCCL 2's version");
    }

    [Test, Category("Gpu")]
    public void AOneGpuCommunicatorReducesAndGathersOnTheStream()
    {
        using var backend = (CudaBackend)new BackendCase("Cuda", () => new CudaBackend(), requiredVariable: "OR1_REQUIRE_CUDA").CreateOrIgnore();
        if (NcclCollectives.Version(out string? missing) is null)
        {
            if (Environment.GetEnvironmentVariable("OR1_REQUIRE_NCCL") == "1") Assert.Fail($"OR1_REQUIRE_NCCL=1 but {missing}");
            Assert.Ignore(missing!);
        }
        using var nccl = NcclCollectives.Create(backend, SingleProcess.Instance);
        Assert.That((nccl.Rank, nccl.WorldSize), Is.EqualTo((0, 1)));
        foreach (var dtype in new[] { DType.Float32, DType.BFloat16 })
        {
            var values = Enumerable.Range(0, 1000).Select(i => (float)(i % 97)).ToArray();
            using var source = backend.Allocate(DType.Float32, new TensorShape(values.Length));
            backend.Upload<float>(values, source);
            using var buffer = backend.Allocate(dtype, new TensorShape(values.Length));
            using var other = backend.Allocate(dtype, new TensorShape(values.Length));
            using var back = backend.Allocate(DType.Float32, new TensorShape(values.Length));
            if (dtype == DType.Float32) backend.Copy(source, buffer); else backend.Convert(source, buffer);
            nccl.AllReduceSum(buffer);
            nccl.ReduceScatterSum(buffer, other);
            nccl.ReduceSum(other, buffer, root: 0);
            nccl.ReduceSum(buffer, other, root: 0);
            nccl.AllGather(other, buffer);
            if (dtype == DType.Float32) backend.Copy(buffer, back); else backend.Convert(buffer, back);
            var result = new float[values.Length];
            backend.Download<float>(back, result);
            Assert.That(result, Is.EqualTo(values), $"{dtype}: a world of one sums and gathers to itself (small integers are exact in bf16)");
        }
    }
}
