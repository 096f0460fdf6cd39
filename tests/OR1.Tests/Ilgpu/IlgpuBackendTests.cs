using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Ilgpu;
using OR1.Tests.Support;

namespace OR1.Tests.Ilgpu;

/// <summary>What is specific to the Ilgpu backend on the CPU simulator: device memory, availability, and both sampling paths.</summary>
public sealed class IlgpuBackendTests
{
    private IlgpuBackend _ilgpu = null!;
    private CpuBackend _cpu = null!;

    [OneTimeSetUp]
    public void Create()
    {
        _ilgpu = IlgpuBackend.OnSharedCpuSimulator();
        _cpu = new CpuBackend(threads: 2);
    }

    [OneTimeTearDown]
    public void Destroy()
    {
        _ilgpu?.Dispose();
        _cpu?.Dispose();
    }

    [Test]
    public void MemoryIsDeviceMemoryReachedOnlyThroughUploadAndDownload()
    {
        using var t = _ilgpu.Floats([1f, 2f, 3f], 3);
        Assert.That(t.IsHostVisible, Is.False);
        Assert.That(() => t.AsSpan<float>(), Throws.InvalidOperationException.With.Message.Contains("Download"));
        Assert.That(t.ToFloats(), Is.EqualTo(new[] { 1f, 2f, 3f }));
        using var zeros = _ilgpu.Zeros(5);
        Assert.That(zeros.ToFloats(), Is.All.EqualTo(0f), "allocations are zero-filled");
        Assert.That(_ilgpu.Kind, Is.EqualTo(BackendKind.Ilgpu));
        Assert.That(_ilgpu.Description, Does.Contain("CPU simulator"));
        var facts = _ilgpu.Facts();
        Assert.That(facts.Gpu, Is.Null);
        Assert.That(facts.Host!.Emulation, Does.Contain("warps of 4, groups of 8"));
        Assert.That(facts.StorageTypes, Is.EqualTo(new[] { DType.Float32 }));
    }

    [Test]
    public void CudaIsEitherAvailableOrATypedError()
    {
        try
        {
            using var cuda = IlgpuBackend.CreateCuda();
            Assert.That(cuda.IsCuda, Is.True);
            var facts = cuda.Facts();
            Assert.That(facts.Host, Is.Null);
            Assert.That(facts.Gpu!.Multiprocessors, Is.GreaterThan(0));
            Assert.That(facts.Gpu.FreeMemoryBytes, Is.GreaterThan(0).And.LessThanOrEqualTo(facts.Gpu.TotalMemoryBytes));
            Assert.That(facts.Gpu.CublasVersion, Is.Null, "ILGPU's GEMM is its own kernel");
            Assert.That(facts.Kernels, Does.Contain("ILGPU's PTX backend"));
        }
        catch (BackendUnavailableException e)
        {
            Assert.That(e.Backend, Is.EqualTo(BackendKind.Ilgpu));
            Assert.That(e.Message, Does.Contain("CUDA"));
        }
    }

    [Test]
    public void CopyAndRowMovesHandleBf16RowsOfOddLength()
    {
        // Three bf16 values per row: 6-byte rows that are not whole 32-bit words.
        ushort[] bits = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        using var source = _ilgpu.Allocate(DType.BFloat16, new TensorShape(3, 3));
        _ilgpu.Upload<BFloat16>(bits.Select(b => new BFloat16(b)).ToArray(), source);
        using var indices = _ilgpu.Ints([2, 0], 2);
        using var gathered = _ilgpu.Allocate(DType.BFloat16, new TensorShape(2, 3));
        _ilgpu.GatherRows(source, indices, gathered);
        var result = new BFloat16[6];
        _ilgpu.Download<BFloat16>(gathered, result);
        Assert.That(result.Select(b => (int)b.Bits), Is.EqualTo(new[] { 7, 8, 9, 1, 2, 3 }));
        using var copy = _ilgpu.Allocate(DType.BFloat16, new TensorShape(9));
        _ilgpu.Copy(source, copy);
        var copied = new BFloat16[9];
        _ilgpu.Download<BFloat16>(copy, copied);
        Assert.That(copied.Select(b => (int)b.Bits), Is.EqualTo(bits.Select(b => (int)b)));
    }

    /// <summary>
    /// The uniform of each row is CounterRng's, so with the same seed and counter the Ilgpu backend draws the
    /// same tokens as the Cpu backend, on both of its paths: one thread per row (small vocabularies) and one
    /// group per row (bitwise searches for the top-k, top-p and draw cuts).
    /// </summary>
    [TestCase(1f, 1f, 0)]
    [TestCase(0f, 1f, 0)]
    [TestCase(0.7f, 1f, 5)]
    [TestCase(1.3f, 0.8f, 0)]
    [TestCase(1f, 0.9f, 9)]
    public void SamplingDrawsTheCpuBackendsTokensOnBothPaths(float temperature, float topP, int topK)
    {
        const int rows = 12, vocab = 37;
        var logits = TestData.Normal(rows * vocab, 31, std: 2f);
        // Ties, so that the (probability desc, id asc) order matters.
        logits[3] = logits[10];
        logits[vocab + 5] = logits[vocab + 6];
        var options = new SamplingOptions(temperature, topP, topK);
        var (cpuTokens, cpuLogProbs) = Sample(_cpu, logits, rows, vocab, options);
        foreach (int threadRowVocabulary in new[] { 64, 0 })
        {
            _ilgpu.SamplingThreadRowVocabulary = threadRowVocabulary;
            try
            {
                var (tokens, logProbs) = Sample(_ilgpu, logits, rows, vocab, options);
                string path = threadRowVocabulary > 0 ? "thread per row" : "group per row";
                TensorAssert.Equal(tokens, cpuTokens, $"tokens ({path})");
                TensorAssert.Close(logProbs, cpuLogProbs, 1e-5, 1e-5, $"log-probs ({path})");
            }
            finally { _ilgpu.SamplingThreadRowVocabulary = -1; }
        }
    }

    private static (int[] Tokens, float[] LogProbs) Sample(IBackend backend, float[] logits, int rows, int vocab, SamplingOptions options)
    {
        using var l = backend.Floats(logits, rows, vocab);
        using var tokens = backend.Allocate(DType.Int32, new TensorShape(rows));
        using var logProbs = backend.Zeros(rows);
        backend.Sample(l, options, seed: 11, counter: 4, tokens, logProbs);
        return (tokens.ToInts(), logProbs.ToFloats());
    }

    [Test]
    public void AttentionBackwardIsBitwiseDeterministic()
    {
        var heads = new AttentionHeads(4, 2, 8);
        const int n = 21;
        using var seqs = Segments.FromLengths(_ilgpu, [13, 1, 7]);
        using var q = _ilgpu.Floats(TestData.Normal(n * 32, 1), n, 32);
        using var k = _ilgpu.Floats(TestData.Normal(n * 16, 2), n, 16);
        using var v = _ilgpu.Floats(TestData.Normal(n * 16, 3), n, 16);
        using var dy = _ilgpu.Floats(TestData.Normal(n * 32, 4), n, 32);
        using var y = _ilgpu.Zeros(n, 32);
        using var lse = _ilgpu.Zeros(n, 4);
        _ilgpu.AttentionForward(q, k, v, seqs, heads, heads.DefaultScale, y, lse);
        float[][] Run()
        {
            using var dq = _ilgpu.Zeros(n, 32);
            using var dk = _ilgpu.Zeros(n, 16);
            using var dv = _ilgpu.Zeros(n, 16);
            _ilgpu.AttentionBackward(dy, q, k, v, y, lse, seqs, heads, heads.DefaultScale, dq, dk, dv);
            return [dq.ToFloats(), dk.ToFloats(), dv.ToFloats()];
        }
        var first = Run();
        var second = Run();
        for (int i = 0; i < 3; i++) Assert.That(second[i], Is.EqualTo(first[i]), $"gradient {i} differs between runs");
    }

    [Test]
    public void HeadDimensionsAboveTheSharedMemoryLimitAreReported()
    {
        var heads = new AttentionHeads(1, 1, IlgpuAttention.MaxHeadDim + 2);
        using var seqs = Segments.FromLengths(_ilgpu, [2]);
        using var q = _ilgpu.Zeros(2, heads.HeadDim);
        Assert.That(() => _ilgpu.AttentionForward(q, q, q, seqs, heads, 0.1f, _ilgpu.Zeros(2, heads.HeadDim), _ilgpu.Zeros(2, 1)),
            Throws.TypeOf<NotSupportedException>().With.Message.Contains("AttentionForward").And.Message.Contains("head dimensions up to"));
    }
}
