using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Emu;
using OR1.Tests.Support;

namespace OR1.Tests.Emu;

/// <summary>
/// The CUDA kernels against the Cpu backend where the op tests' shapes do not reach the kernels' other
/// paths: sampling over vocabularies whose radix select needs all three digit levels and the
/// 256-thread blocks a GPU uses for a real vocabulary, and the chunked log-prob over many chunks with
/// the Cuda backend's tiling. Both backends draw with the same counter-based uniforms and integer
/// weights, so the sampled tokens must agree one for one.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class EmuVersusCpuTests
{
    private CpuBackend _cpu = null!;
    private EmuBackend _emu = null!;
    private EmuBackend _emuGpu = null!;

    [OneTimeSetUp]
    public void Create()
    {
        _cpu = new CpuBackend(threads: 2);
        _emu = EmuOrIgnore.Open(() => new EmuBackend());
        _emuGpu = new EmuBackend(EmuLaunchShapes.Gpu);
    }

    [OneTimeTearDown]
    public void Destroy()
    {
        _cpu?.Dispose();
        _emu?.Dispose();
        _emuGpu?.Dispose();
    }

    private static (int[] Tokens, float[] LogProbs) Sample(IBackend backend, float[] logits, int rows, int vocab, SamplingOptions options)
    {
        using var l = backend.Floats(logits, rows, vocab);
        using var tokens = backend.Allocate(DType.Int32, new TensorShape(rows));
        using var logProbs = backend.Zeros(rows);
        backend.Sample(l, options, seed: 11, counter: 5, tokens, logProbs);
        return (tokens.ToInts(), logProbs.ToFloats());
    }

    // (vocab, temperature, topK, topP): above 1024 tokens the GPU launch shapes run the radix select in 256-thread blocks.
    [TestCase(9000, 1f, 40, 1f)]
    [TestCase(9000, 0.8f, 0, 0.7f)]
    [TestCase(20000, 1.2f, 300, 0.9f)]
    [TestCase(20000, 1f, 0, 1f)]
    [TestCase(600, 1f, 0, 0.5f)]
    [TestCase(9000, 0f, 0, 1f)]
    public void SampledTokensMatchTheCpuBackend(int vocab, float temperature, int topK, float topP)
    {
        const int rows = 24;
        var logits = TestData.Normal(rows * vocab, vocab + topK, std: 2.5f);
        var options = new SamplingOptions(temperature, topP, topK);
        var cpu = Sample(_cpu, logits, rows, vocab, options);
        foreach (var emu in new[] { _emu, _emuGpu })
        {
            var kernel = Sample(emu, logits, rows, vocab, options);
            Assert.That(kernel.Tokens, Is.EqualTo(cpu.Tokens), $"tokens, {emu.Shapes} shapes");
            Assert.That(kernel.LogProbs, Is.EqualTo(cpu.LogProbs).Within(2e-5f), $"log-probs, {emu.Shapes} shapes");
        }
    }

    [Test]
    public void LogProbOverManyChunksMatchesTheCpuBackend()
    {
        const int rows = 70, width = 24, vocab = 20000;
        var hidden = TestData.Normal(rows * width, 1);
        var weight = TestData.Normal(vocab * width, 2, std: 0.6f);
        var targets = TestData.Ints(rows, vocab, 3);
        var dLogp = TestData.Uniform(rows, 4);
        var dEnt = TestData.Uniform(rows, 5);
        float[][] Run(IBackend b)
        {
            using var h = b.Floats(hidden, rows, width);
            using var w = b.Floats(weight, vocab, width);
            using var t = b.Ints(targets, rows);
            using var lp = b.Zeros(rows);
            using var ent = b.Zeros(rows);
            using var lse = b.Zeros(rows);
            b.LogProbForward(h, w, t, 0.9f, lp, ent, lse);
            using var dh = b.Zeros(rows, width);
            using var dw = b.Zeros(vocab, width);
            using var g1 = b.Floats(dLogp, rows);
            using var g2 = b.Floats(dEnt, rows);
            b.LogProbBackward(g1, g2, h, w, t, 0.9f, ent, lse, dh, dw);
            return [lp.ToFloats(), ent.ToFloats(), lse.ToFloats(), dh.ToFloats(), dw.ToFloats()];
        }
        var cpu = Run(_cpu);
        string[] names = ["log-probs", "entropy", "log-sum-exp", "dHidden", "dWeight"];
        foreach (var emu in new[] { _emu, _emuGpu })
        {
            var kernel = Run(emu);
            for (int i = 0; i < names.Length; i++)
                TensorAssert.Close(kernel[i], TestData.ToDouble(cpu[i]), 2e-4, 2e-4, $"{names[i]} ({emu.Shapes} shapes) vs Cpu");
        }
    }
}
