using OR1.Native;
using OR1.Native.Cuda;
using OR1.Native.Emu;
using OR1.Tests.Ops;
using OR1.Tests.Support;

namespace OR1.Tests.GpuCheck;

/// <summary>
/// What bench/gpu-check.sh runs under compute-sanitizer (memcheck, then racecheck): every kernel family once, at tiny
/// shapes (the sanitizer slows kernels by 10-100x), bf16 where the kernels differ by storage (the tensor-core
/// attention, the in-place bf16 log-prob gradient). Correctness is the op tests' job; here each result is only
/// required to be finite, so a failure points at memory. The Cuda fixture carries the category "GpuSanitize" (the
/// check selects it with --where "cat == GpuSanitize"); the emulator runs the same calls in CI so the subset cannot rot.
/// </summary>
[TestFixtureSource(nameof(Cases))]
public sealed class SanitizerSubsetTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    public static IEnumerable<TestFixtureData> Cases()
    {
        yield return new TestFixtureData(new BackendCase("Emu", () => new EmuBackend(), requiredVariable: "OR1_REQUIRE_EMU"));
        var cuda = new TestFixtureData(new BackendCase("Cuda", () => new CudaBackend(), toleranceScale: 2.0, requiredVariable: "OR1_REQUIRE_CUDA"));
        cuda.Properties.Add(NUnit.Framework.Internal.PropertyNames.Category, "GpuSanitize");
        yield return cuda;
    }

    private Tensor Bf16(float[] values, params int[] shape) => Own(Backend.BFloat16s(values, shape));

    private static void Finite(Tensor t, string what) =>
        Assert.That(t.ToFloatsWidened(), Has.All.Matches<float>(float.IsFinite), $"{what}: non-finite values");

    [Test]
    public void ElementwiseGemmAndConversions()
    {
        var a = Floats(TestData.Uniform(5 * 7, 1), 5, 7);
        var b = Floats(TestData.Uniform(5 * 7, 2), 5, 7);
        var c = Zeros(5, 7);
        Backend.Add(a, b, c);
        Backend.Scale(c, 0.5f);
        var bias = Floats(TestData.Uniform(7, 3), 7);
        Backend.AddBias(c, bias);
        var dBias = Zeros(7);
        Backend.BiasBackward(c, dBias);
        var rows = Ints([4, 0, 2], 3);
        var gathered = Zeros(3, 7);
        Backend.GatherRows(c, rows, gathered);
        Backend.ScatterRows(gathered, rows, c);
        var half = Own(Backend.PoisonedBFloat16(5, 7));
        Backend.Convert(c, half);
        var product = Zeros(5, 5);
        Backend.MatMul(a, false, b, true, product);
        foreach (var (t, name) in new[] { (c, "add/scale/bias/scatter"), (dBias, "bias backward"), (half, "convert"), (product, "MatMul") }) Finite(t, name);
    }

    [Test]
    public void NormRopeSwiGluEmbedding()
    {
        const int rows = 5, width = 64;
        var x = Bf16(TestData.Uniform(rows * width, 4), rows, width);
        var w = Bf16(TestData.Uniform(width, 5), width);
        var y = Own(Backend.PoisonedBFloat16(rows, width));
        var inv = Poisoned(rows);
        Backend.RmsNormForward(x, w, 1e-6f, y, inv);
        var dx = Own(Backend.PoisonedBFloat16(rows, width));
        var dw = Zeros(width);
        Backend.RmsNormBackward(y, x, w, inv, dx, dw);
        var positions = Ints([0, 1, 2, 7, 9], rows);
        var rotated = Own(Backend.PoisonedBFloat16(rows, width));
        Backend.RopeForward(x, positions, 2, 32, 1e6f, rotated);
        Backend.RopeBackward(rotated, positions, 2, 32, 1e6f, dx);
        var gate = Own(Backend.PoisonedBFloat16(rows, width));
        Backend.SwiGluForward(x, y, gate);
        var dGate = Own(Backend.PoisonedBFloat16(rows, width));
        var dUp = Own(Backend.PoisonedBFloat16(rows, width));
        Backend.SwiGluBackward(gate, x, y, dGate, dUp);
        var table = Bf16(TestData.Uniform(11 * width, 6), 11, width);
        var ids = Ints([3, 10, 0, 3, 7], rows);
        var embedded = Own(Backend.PoisonedBFloat16(rows, width));
        Backend.EmbeddingForward(ids, table, embedded);
        var dTable = Zeros(11, width);
        Backend.EmbeddingBackward(ids, x, dTable);
        foreach (var (t, name) in new[] { (y, "RMSNorm"), (dw, "RMSNorm dW"), (dx, "RoPE backward"), (gate, "SwiGLU"), (dGate, "SwiGLU backward"), (embedded, "embedding"), (dTable, "embedding backward") })
            Finite(t, name);
    }

    [TestCase(DType.BFloat16, 64)] // the tensor-core kernels
    [TestCase(DType.Float32, 64)]  // the CUDA-core kernels
    public void AttentionForwardBackwardAndDecode(DType storage, int headDim)
    {
        var heads = new AttentionHeads(4, 2, headDim);
        int[] lengths = [17, 70];
        int n = lengths.Sum();
        var seqs = Lengths(lengths);
        Tensor Make(int rows, int width, int seed) =>
            storage == DType.BFloat16 ? Bf16(TestData.Uniform(rows * width, seed), rows, width) : Floats(TestData.Uniform(rows * width, seed), rows, width);
        Tensor Empty(int rows, int width) => storage == DType.BFloat16 ? Own(Backend.PoisonedBFloat16(rows, width)) : Poisoned(rows, width);
        var q = Make(n, heads.QueryWidth, 7);
        var k = Make(n, heads.KvWidth, 8);
        var v = Make(n, heads.KvWidth, 9);
        var o = Empty(n, heads.QueryWidth);
        var lse = Poisoned(n, heads.NumHeads);
        Backend.AttentionForward(q, k, v, seqs, heads, heads.DefaultScale, o, lse);
        var dq = Empty(n, heads.QueryWidth);
        var dk = Empty(n, heads.KvWidth);
        var dv = Empty(n, heads.KvWidth);
        Backend.AttentionBackward(o, q, k, v, o, lse, seqs, heads, heads.DefaultScale, dq, dk, dv);
        var cacheK = Own(Backend.Allocate(storage, new TensorShape(2, 40, heads.KvWidth)));
        var cacheV = Own(Backend.Allocate(storage, new TensorShape(2, 40, heads.KvWidth)));
        Backend.Fill(cacheK, 0.1f);
        Backend.Fill(cacheV, 0.2f);
        var decoded = Empty(2, heads.QueryWidth);
        Backend.AttentionDecode(q.SliceRows(0, 2), cacheK, cacheV, Ints([1, 0], 2), Ints([40, 3], 2), heads, heads.DefaultScale, decoded);
        foreach (var (t, name) in new[] { (o, "forward"), (lse, "log-sum-exp"), (dq, "dQ"), (dk, "dK"), (dv, "dV"), (decoded, "decode") }) Finite(t, name);
    }

    [Test]
    public void LogProbGrpoAdamWNormAndSampling()
    {
        const int rows = 6, width = 16, vocab = 1031;
        var hidden = Bf16(TestData.Uniform(rows * width, 10), rows, width);
        var weight = Bf16(TestData.Uniform(vocab * width, 11), vocab, width);
        var targets = Ints(TestData.Ints(rows, vocab, 12), rows);
        var logp = Poisoned(rows);
        var entropy = Poisoned(rows);
        var lse = Poisoned(rows);
        Backend.LogProbForward(hidden, weight, targets, 0.7f, logp, entropy, lse);
        var dHidden = Own(Backend.PoisonedBFloat16(rows, width));
        var dWeight = Zeros(vocab, width);
        var ones = Floats(Enumerable.Repeat(1f / rows, rows).ToArray(), rows);
        Backend.LogProbBackward(ones, ones, hidden, weight, targets, 0.7f, entropy, lse, dHidden, dWeight);

        var rewards = Floats([1f, 0f, 1f, 1f, 0f, 0f], rows);
        var groups = Lengths(3, 3);
        var advantages = Poisoned(rows);
        Backend.GrpoAdvantages(rewards, groups, 1e-6f, advantages);
        var terms = Poisoned(8);
        Backend.PolicyLossForward(logp, logp, advantages, entropy, ones, null, new PolicyLossOptions(), terms);
        var dLogp = Poisoned(rows);
        var dEntropy = Poisoned(rows);
        Backend.PolicyLossBackward(logp, logp, advantages, ones, null, new PolicyLossOptions(), dLogp, dEntropy);

        var parameter = Floats(TestData.Uniform(100, 13), 100);
        var slot = new AdamWSlot(parameter, Floats(TestData.Uniform(100, 14), 100), Zeros(100), Zeros(100), WorkingCopy: Own(Backend.PoisonedBFloat16(100)));
        Backend.AdamWStep([slot], new AdamWOptions(1e-3), 1, 1f);
        float norm = Backend.GlobalNorm([parameter, dWeight]);

        var logits = Floats(TestData.Uniform(3 * vocab, 15, -4f, 4f), 3, vocab);
        var tokens = Ints([0, 0, 0], 3);
        var sampled = Poisoned(3);
        Backend.Sample(logits, new SamplingOptions(0.8f, 0.9f, 50), 1, 2, tokens, sampled);
        foreach (var (t, name) in new[] { (logp, "log-probs"), (dHidden, "dHidden"), (dWeight, "dWeight"), (advantages, "advantages"), (terms, "loss terms"), (dLogp, "dLogp"), (parameter, "AdamW"), (sampled, "sampled log-probs") })
            Finite(t, name);
        Assert.That(float.IsFinite(norm), Is.True, "global norm");
    }
}
