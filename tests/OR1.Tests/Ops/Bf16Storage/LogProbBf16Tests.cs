using OR1.Native.Emu;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// Log-prob + entropy with bf16 storage (hidden, the LM-head weight and dHidden in bf16; log-probs, entropies, log-sum-exp
/// and dWeight in fp32) against the double reference on the bf16-rounded inputs.
/// Tolerances, with u = 2^-8 the unit roundoff of bf16:
/// <list type="bullet">
/// <item>log-probs, entropy, log-sum-exp: the logit tile is an fp32 GEMM of exact bf16 inputs and the statistics are fp32,
/// so the fp32 tests' tolerances hold (atol 1e-4, rtol 1e-5). Observed: max |diff| 3.8e-6.</item>
/// <item>dHidden (bf16): the logit gradient dz is rounded to bf16 for the two GEMMs, so each of the V terms of
/// dz . W / T carries a relative error up to u (the sum's error is at most u sum_v |dz_v W_vd| / T, in practice a random
/// walk far below that), and the result is rounded to bf16 once: rtol u, atol 1e-2. These data need at most 4.9e-3 at rtol u.</item>
/// <item>dWeight (fp32, accumulated onto a non-zero value): the same bf16-rounded dz, through dz^T . hidden / T: rtol u
/// (of the accumulated value, looser than needed where the initial value dominates), atol 1e-2. These data need at most
/// 6.0e-3 at rtol u.</item>
/// </list>
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class LogProbBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>bf16's unit roundoff: rounding to bf16 moves a value by at most this fraction of itself.</summary>
    private const double U = 1.0 / 256;
    private const double StatAtol = 1e-4, StatRtol = 1e-5;
    private const double GradientAtol = 1e-2;

    // (rows, width, vocab, temperature, with entropy gradient). The Emu runtime's host launch shapes tile the logits in
    // vocabulary chunks of 512 and blocks of 65,536 / 512 = 128 rows (pinned by TheCasesCrossTheEmuTiles): 131 rows x 1061
    // tokens is 2 row blocks x 3 chunks (the last of 37 tokens), 300 x 1200 is 3 x 3; 8230 tokens cross the 8192-token chunk
    // of the GPU launch shapes (EmuGpuShapes, Cuda) as well.
    [TestCase(3, 5, 11, 0.7f, true)]
    [TestCase(131, 24, 1061, 1f, true)]
    [TestCase(131, 24, 1061, 0.7f, false)]
    [TestCase(300, 64, 1200, 0.7f, true)]
    [TestCase(300, 64, 1200, 1f, false)]
    [TestCase(5, 16, 8230, 1f, false)]
    [TestCase(5, 16, 8230, 0.7f, true)]
    public void ForwardAndBackwardMatchReference(int rows, int width, int vocab, float temperature, bool entropyGradient)
    {
        var hidden = Bf16.Round(TestData.Normal(rows * width, rows + vocab));
        var weight = Bf16.Round(TestData.Normal(vocab * width, 2, std: 0.5f));
        var targets = TestData.Ints(rows, vocab, 3);
        targets[^1] = vocab - 1; // a target in the ragged last chunk, whatever the tiling
        var ht = Own(Backend.BFloat16s(hidden, rows, width));
        var wt = Own(Backend.BFloat16s(weight, vocab, width));
        var tt = Ints(targets, rows);
        var logp = Poisoned(rows);
        var entropy = Poisoned(rows);
        var lse = Poisoned(rows);
        Backend.LogProbForward(ht, wt, tt, temperature, logp, entropy, lse);
        var (refLogp, refEntropy, refLse) = LogProbReference.Forward(TestData.ToDouble(hidden), TestData.ToDouble(weight), targets, width, vocab, temperature);
        Bf16Check.Close(logp.ToFloats(), refLogp, Tol(StatAtol), Tol(StatRtol), "log-probs (fp32)");
        Bf16Check.Close(entropy.ToFloats(), refEntropy, Tol(StatAtol), Tol(StatRtol), "entropy (fp32)");
        Bf16Check.Close(lse.ToFloats(), refLse, Tol(StatAtol), Tol(StatRtol), "log-sum-exp (fp32)");
        // The logit tile is an fp32-accumulating GEMM either way: on the same bf16-valued inputs held as Float32 the fp32
        // path gives the same statistics (bit for bit on the emulator, whose GEMM is one template; cuBLAS's bf16 and fp32
        // GEMMs may sum in different orders).
        var (logp32, entropy32, lse32) = (Poisoned(rows), Poisoned(rows), Poisoned(rows));
        Backend.LogProbForward(Floats(hidden, rows, width), Floats(weight, vocab, width), tt, temperature, logp32, entropy32, lse32);
        var (sameAtol, sameRtol) = Case.Name == "Cuda" ? (Tol(StatAtol), Tol(StatRtol)) : (0, 0);
        TensorAssert.Close(logp.ToFloats(), logp32.ToFloats(), sameAtol, sameRtol, "log-probs: bf16 storage vs the fp32 path");
        TensorAssert.Close(entropy.ToFloats(), entropy32.ToFloats(), sameAtol, sameRtol, "entropy: bf16 storage vs the fp32 path");
        TensorAssert.Close(lse.ToFloats(), lse32.ToFloats(), sameAtol, sameRtol, "log-sum-exp: bf16 storage vs the fp32 path");

        var dLogp = TestData.Uniform(rows, 4);
        var dEntropy = entropyGradient ? TestData.Uniform(rows, 5) : null;
        var dHidden = Own(Backend.PoisonedBFloat16(rows, width));
        var dWeightInit = TestData.Uniform(vocab * width, 6);
        var dWeight = Floats(dWeightInit, vocab, width);
        Backend.LogProbBackward(Floats(dLogp, rows), dEntropy is null ? null : Floats(dEntropy, rows), ht, wt, tt, temperature, entropy, lse, dHidden, dWeight);
        var refDWeight = TestData.ToDouble(dWeightInit);
        var refDHidden = LogProbReference.Backward(TestData.ToDouble(dLogp), dEntropy is null ? null : TestData.ToDouble(dEntropy),
            TestData.ToDouble(hidden), TestData.ToDouble(weight), targets, width, vocab, temperature, refDWeight);
        Bf16Check.Close(dHidden.ToFloatsWidened(), refDHidden, GradientAtol, U, "bf16 dHidden", [rows, width]);
        Bf16Check.Close(dWeight.ToFloats(), refDWeight, GradientAtol, U, "dWeight (fp32, accumulated)", [vocab, width]);
    }

    /// <summary>The cases above are chosen against these tile sizes; if the runtime's change, the cases must follow.</summary>
    [Test]
    public void TheCasesCrossTheEmuTiles()
    {
        if (Backend is not EmuBackend) Assert.Ignore("the emulator's tile sizes; the Cuda runtime's are EmuGpuShapes'");
        using var host = new EmuRuntime(EmuLaunchShapes.Host);
        Assert.That(host.VocabChunk, Is.EqualTo(512));
        Assert.That(host.LogitTileFloats / host.VocabChunk, Is.EqualTo(128), "rows per logit tile");
        using var gpu = new EmuRuntime(EmuLaunchShapes.Gpu);
        Assert.That(gpu.VocabChunk, Is.EqualTo(8192));
    }
}
