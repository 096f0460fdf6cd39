using OR1.Native;
using OR1.Native.Kernels;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// Attention with bf16 storage (q, k, v, output, dOutput, dq, dk, dv and the decode KV caches in bf16; the log-sum-exp
/// in fp32) against the double reference on the bf16-rounded inputs, so the reference sees exactly what the device stores.
/// Head dims that are multiples of 8 run on the tensor-core kernels (attention.cu), which round, as FlashAttention-2
/// does, P to bf16 before P V and dS to bf16 before dS K and dS^T Q; other head dims run on the CUDA-core kernels
/// (attention_simt.cu), which round only at the store. Error model, with u = 2^-8 the unit roundoff of bf16:
/// <list type="bullet">
/// <item>output: a weighted mean of v with each weight off by at most u of itself, then rounded: per element
/// u sum_j P_ij |v_jd| + u |O_id| + 1e-4 (fp32 noise). The first term is the reference attention of |v|.</item>
/// <item>log-sum-exp: fp32 from exact bf16 inputs: the fp32 tests' tolerances (atol 2e-5, rtol 1e-5).</item>
/// <item>dv = sum_i P_ij dO_i with P rounded: per element u sum_i P_ij |dO_id| + u |dv| + 1e-3, the first term the
/// reference dv of |dO|.</item>
/// <item>dq, dk: D_i = dO_i . O_i comes from the bf16-rounded O (as in FlashAttention-2) and dS is rounded before its
/// products, so each term of scale sum_j dS_ij k_j is off by u |dS_ij| + P_ij |D_i - D_i exact| times |k_j|: rtol u and
/// atol 3e-2 for these data (values of order 1-4, 7 heads at most).</item>
/// </list>
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class AttentionBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>(sequence lengths, query heads, kv heads, head dim): length-1 and odd sequences that cross the 16-row query
    /// tile and the 32-key tile, GQA 2:1 and 7:1, head dims 16, 64 and 128 (one, two and four columns per lane; 128 needs
    /// more than 48 KB of shared memory in the dk/dv kernel).</summary>
    private static readonly object[] Cases =
    [
        new object[] { new[] { 1, 17, 40 }, 4, 2, 16 },
        new object[] { new[] { 1, 17, 40 }, 7, 1, 64 },
        new object[] { new[] { 33, 1, 5 }, 4, 2, 128 },
        new object[] { new[] { 3, 1, 65 }, 7, 1, 128 },
        // The tensor-core kernels at the shapes: sequence lengths 1, 17, 129 and 1000 packed unequally, head dims 64,
        // 80 (padded to 96 in the kernels) and 128, 1, 2 and 7 query heads per kv head; 1000 rows cross 16 query blocks.
        new object[] { new[] { 1, 17, 129 }, 2, 2, 64 },
        new object[] { new[] { 129, 17, 1 }, 4, 2, 80 },
        new object[] { new[] { 1000, 17 }, 7, 1, 128 },
    ];

    /// <summary>bf16's unit roundoff: rounding to bf16 moves a value by at most this fraction of itself.</summary>
    private const double U = 1.0 / 256;
    private const double OutputAtol = 1e-4;
    private const double LseAtol = 2e-5, LseRtol = 1e-5;
    private const double DvAtol = 1e-3;
    private const double DqDkAtol = 3e-2;

    /// <summary>u |terms| + u |expected| + atol per element: the error bound of a sum of terms each rounded to bf16.</summary>
    private static double[] RoundedSumBound(double[] absoluteTerms, double[] expected, double atol)
    {
        var bound = new double[expected.Length];
        for (int i = 0; i < bound.Length; i++) bound[i] = U * absoluteTerms[i] + U * Math.Abs(expected[i]) + atol;
        return bound;
    }

    private static double[] Abs(float[] x) => x.Select(v => (double)Math.Abs(v)).ToArray();

    [TestCaseSource(nameof(Cases))]
    public void ForwardAndBackwardMatchReference(int[] lengths, int heads, int kvHeads, int headDim)
    {
        var shape = new AttentionHeads(heads, kvHeads, headDim);
        int n = lengths.Sum();
        var offsets = TestData.OffsetsFromLengths(lengths);
        float scale = shape.DefaultScale;
        var q = Bf16.Round(TestData.Normal(n * shape.QueryWidth, 1));
        var k = Bf16.Round(TestData.Normal(n * shape.KvWidth, 2));
        var v = Bf16.Round(TestData.Normal(n * shape.KvWidth, 3));
        var dy = Bf16.Round(TestData.Normal(n * shape.QueryWidth, 4));
        var qt = Own(Backend.BFloat16s(q, n, shape.QueryWidth));
        var kt = Own(Backend.BFloat16s(k, n, shape.KvWidth));
        var vt = Own(Backend.BFloat16s(v, n, shape.KvWidth));
        var seqs = Lengths(lengths);
        var y = Own(Backend.PoisonedBFloat16(n, shape.QueryWidth));
        var lse = Poisoned(n, heads);
        Backend.AttentionForward(qt, kt, vt, seqs, shape, scale, y, lse);
        var (refY, refLse) = AttentionReference.Forward(TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v), offsets, heads, kvHeads, headDim, scale);
        var (weightedAbsV, _) = AttentionReference.Forward(TestData.ToDouble(q), TestData.ToDouble(k), Abs(v), offsets, heads, kvHeads, headDim, scale);
        Bf16Check.Within(y.ToFloatsWidened(), refY, RoundedSumBound(weightedAbsV, refY, Tol(OutputAtol)), "bf16 attention output", [n, heads, headDim]);
        Bf16Check.Close(lse.ToFloats(), refLse, Tol(LseAtol), Tol(LseRtol), "log-sum-exp (fp32)", [n, heads]);

        var dq = Own(Backend.PoisonedBFloat16(n, shape.QueryWidth));
        var dk = Own(Backend.PoisonedBFloat16(n, shape.KvWidth));
        var dv = Own(Backend.PoisonedBFloat16(n, shape.KvWidth));
        Backend.AttentionBackward(Own(Backend.BFloat16s(dy, n, shape.QueryWidth)), qt, kt, vt, y, lse, seqs, shape, scale, dq, dk, dv);
        var (refDq, refDk, refDv) = AttentionReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v),
            offsets, heads, kvHeads, headDim, scale);
        Bf16Check.Close(dq.ToFloatsWidened(), refDq, DqDkAtol, U, "bf16 dq", [n, heads, headDim]);
        Bf16Check.Close(dk.ToFloatsWidened(), refDk, DqDkAtol, U, "bf16 dk", [n, kvHeads, headDim]);
        var (_, _, dvOfAbsDy) = AttentionReference.Backward(Abs(dy), TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v),
            offsets, heads, kvHeads, headDim, scale);
        Bf16Check.Within(dv.ToFloatsWidened(), refDv, RoundedSumBound(dvOfAbsDy, refDv, Tol(DvAtol)), "bf16 dv", [n, kvHeads, headDim]);
    }

    /// <summary>
    /// The bf16 kernels are the fp32 kernels' arithmetic with one rounding at each store: on the same bf16-valued inputs
    /// (held as Float32 for the fp32 run, and the backward given the bf16-rounded output), the CUDA-core bf16 output and gradients
    /// are the fp32 ones rounded to bf16 (bit for bit on the emulator, within one bf16 ulp on a GPU), and the fp32
    /// log-sum-exp is the fp32 kernel's. Far tighter than the comparison with the reference: a bf16-only slip (a wrong
    /// index, a truncating conversion, a lost term) cannot hide in the bf16 tolerance.
    /// </summary>
    /// <summary>Head dims that are not multiples of 8 (rows not 16-byte aligned for cp.async): the CUDA-core bf16 kernels.</summary>
    private static readonly object[] SimtCases =
    [
        new object[] { new[] { 1, 17, 40 }, 4, 2, 20 },
        new object[] { new[] { 33, 1, 5 }, 7, 1, 36 },
        new object[] { new[] { 3, 1, 65 }, 4, 2, 100 },
    ];

    [TestCaseSource(nameof(SimtCases))]
    public void TheCudaCoreKernelsMatchTheReference(int[] lengths, int heads, int kvHeads, int headDim) =>
        ForwardAndBackwardMatchReference(lengths, heads, kvHeads, headDim);

    [TestCaseSource(nameof(SimtCases))]
    public void ForwardAndBackwardAreTheFp32KernelsRoundedOnce(int[] lengths, int heads, int kvHeads, int headDim)
    {
        var shape = new AttentionHeads(heads, kvHeads, headDim);
        int n = lengths.Sum();
        float scale = shape.DefaultScale;
        var q = Bf16.Round(TestData.Normal(n * shape.QueryWidth, 11));
        var k = Bf16.Round(TestData.Normal(n * shape.KvWidth, 12));
        var v = Bf16.Round(TestData.Normal(n * shape.KvWidth, 13));
        var dy = Bf16.Round(TestData.Normal(n * shape.QueryWidth, 14));
        var seqs = Lengths(lengths);
        var y = Own(Backend.PoisonedBFloat16(n, shape.QueryWidth));
        var lse = Poisoned(n, heads);
        var qt = Own(Backend.BFloat16s(q, n, shape.QueryWidth));
        var kt = Own(Backend.BFloat16s(k, n, shape.KvWidth));
        var vt = Own(Backend.BFloat16s(v, n, shape.KvWidth));
        Backend.AttentionForward(qt, kt, vt, seqs, shape, scale, y, lse);
        var (q32, k32, v32) = (Floats(q, n, shape.QueryWidth), Floats(k, n, shape.KvWidth), Floats(v, n, shape.KvWidth));
        var y32 = Poisoned(n, shape.QueryWidth);
        var lse32 = Poisoned(n, heads);
        Backend.AttentionForward(q32, k32, v32, seqs, shape, scale, y32, lse32);
        Bf16Bits.RoundedFromFp32(y, y32, Case, "attention output", [n, heads, headDim]);
        TensorAssert.Close(lse.ToFloats(), lse32.ToFloats(), SameFp32Arithmetic, SameFp32Arithmetic, "log-sum-exp of the bf16 kernel vs the fp32 kernel's", [n, heads]);

        var dq = Own(Backend.PoisonedBFloat16(n, shape.QueryWidth));
        var dk = Own(Backend.PoisonedBFloat16(n, shape.KvWidth));
        var dv = Own(Backend.PoisonedBFloat16(n, shape.KvWidth));
        Backend.AttentionBackward(Own(Backend.BFloat16s(dy, n, shape.QueryWidth)), qt, kt, vt, y, lse, seqs, shape, scale, dq, dk, dv);
        var (dq32, dk32, dv32) = (Poisoned(n, shape.QueryWidth), Poisoned(n, shape.KvWidth), Poisoned(n, shape.KvWidth));
        Backend.AttentionBackward(Floats(dy, n, shape.QueryWidth), q32, k32, v32, Floats(y.ToFloatsWidened(), n, shape.QueryWidth), lse, seqs, shape, scale,
            dq32, dk32, dv32);
        Bf16Bits.RoundedFromFp32(dq, dq32, Case, "dq", [n, heads, headDim]);
        Bf16Bits.RoundedFromFp32(dk, dk32, Case, "dk", [n, kvHeads, headDim]);
        Bf16Bits.RoundedFromFp32(dv, dv32, Case, "dv", [n, kvHeads, headDim]);
    }

    /// <summary>0 on the emulator (one host compilation of one template); on a GPU the two instantiations are compiled
    /// separately and may contract multiply-adds differently: a few fp32 ulps.</summary>
    private double SameFp32Arithmetic => Case.Name == "Cuda" ? 1e-6 : 0;

    /// <summary>(query heads, kv heads, head dim) of the decode cases.</summary>
    private static readonly object[] DecodeCases =
    [
        new object[] { 4, 2, 16 },
        new object[] { 7, 1, 64 },
        new object[] { 4, 2, 128 },
    ];

    [TestCaseSource(nameof(DecodeCases))]
    public void DecodeMatchesReferenceFp32KernelAndTheLastRowOfAPackedForward(int heads, int kvHeads, int headDim)
    {
        var shape = new AttentionHeads(heads, kvHeads, headDim);
        const int slots = 3, maxLength = 40;
        int[] lengths = [1, 40, 17];   // a single key, two 32-key tiles (the second ragged), one ragged tile
        int[] cacheSlots = [2, 0, 1];
        int b = lengths.Length;
        float scale = shape.DefaultScale;
        var keyCache = Bf16.Round(TestData.Normal(slots * maxLength * shape.KvWidth, 5));
        var valueCache = Bf16.Round(TestData.Normal(slots * maxLength * shape.KvWidth, 6));
        var q = Bf16.Round(TestData.Normal(b * shape.QueryWidth, 7));
        var kc = Own(Backend.KeyCache(Own(Backend.BFloat16s(keyCache, slots * maxLength, shape.KvWidth)), slots, maxLength));
        var vc = Own(Backend.BFloat16s(valueCache, slots, maxLength, shape.KvWidth));
        var y = Own(Backend.PoisonedBFloat16(b, shape.QueryWidth));
        Backend.AttentionDecode(Own(Backend.BFloat16s(q, b, shape.QueryWidth)), kc, vc, Ints(cacheSlots, b), Ints(lengths, b), shape, scale, y);
        var expected = AttentionReference.Decode(TestData.ToDouble(q), TestData.ToDouble(keyCache), TestData.ToDouble(valueCache), cacheSlots, lengths, maxLength,
            heads, kvHeads, headDim, scale);
        Bf16Check.Close(y.ToFloatsWidened(), expected, Tol(OutputAtol), U, "bf16 decode output", [b, heads, headDim]);
        // ... and is the fp32 kernel's result on the same bf16-valued data, rounded once.
        var y32 = Poisoned(b, shape.QueryWidth);
        Backend.AttentionDecode(Floats(q, b, shape.QueryWidth), KeyCache(keyCache, slots, maxLength, shape.KvWidth), Floats(valueCache, slots, maxLength, shape.KvWidth),
            Ints(cacheSlots, b), Ints(lengths, b), shape, scale, y32);
        Bf16Bits.RoundedFromFp32(y, y32, Case, "decode output", [b, heads, headDim]);

        // The same row through the packed forward on the same bf16 data: the sequence is cache slot 0's 40 rows, the
        // query of its last row batch row 1's q (the other rows' queries are arbitrary: causal, they do not matter).
        const int len = 40;
        var kRows = keyCache.AsSpan(0, len * shape.KvWidth).ToArray();
        var vRows = valueCache.AsSpan(0, len * shape.KvWidth).ToArray();
        var qRows = Bf16.Round(TestData.Normal(len * shape.QueryWidth, 8));
        Array.Copy(q, 1 * shape.QueryWidth, qRows, (len - 1) * shape.QueryWidth, shape.QueryWidth);
        var full = Own(Backend.PoisonedBFloat16(len, shape.QueryWidth));
        Backend.AttentionForward(Own(Backend.BFloat16s(qRows, len, shape.QueryWidth)), Own(Backend.BFloat16s(kRows, len, shape.KvWidth)),
            Own(Backend.BFloat16s(vRows, len, shape.KvWidth)), Lengths(len), shape, scale, full, Zeros(len, heads));
        // Decode keeps P in fp32, the tensor-core forward rounds it to bf16 before P V: the two agree within the forward's
        // error model around the reference row (both are checked against it; here, against each other).
        var decodeRow = y.ToFloatsWidened().AsSpan(1 * shape.QueryWidth, shape.QueryWidth).ToArray();
        var forwardRow = full.ToFloatsWidened().AsSpan((len - 1) * shape.QueryWidth, shape.QueryWidth).ToArray();
        var (weightedAbsV, _) = AttentionReference.Forward(TestData.ToDouble(qRows), TestData.ToDouble(kRows), Abs(vRows), [0, len], heads, kvHeads, headDim, scale);
        var rowBound = RoundedSumBound(weightedAbsV.AsSpan((len - 1) * shape.QueryWidth, shape.QueryWidth).ToArray(), TestData.ToDouble(decodeRow), Tol(OutputAtol))
            .Select(b => 2 * b).ToArray(); // the decode's own rounding on top of the forward's
        Bf16Check.Within(forwardRow, TestData.ToDouble(decodeRow), rowBound, "the last row of the packed forward vs decode", [heads, headDim]);
    }

    /// <summary>Cache lengths of the mixed decode batch: 1, both sides of 16, and long ones that a split launch cuts into chunks.</summary>
    private static readonly int[] DecodeLengthPattern = [1, 15, 16, 17, 1000, 257, 511, 2, 640];

    /// <summary>(query heads, kv heads, head dim) of the mixed decode batch: GQA 7, 2 and 1 with head dims 64, 80 and 128 on
    /// the 16-byte path, and 36 (not a multiple of 8) on the scalar path.</summary>
    private static readonly object[] DecodeBatchCases =
    [
        new object[] { 7, 1, 64 },
        new object[] { 4, 2, 80 },
        new object[] { 2, 2, 128 },
        new object[] { 4, 2, 36 },
    ];

    /// <summary>
    /// bf16 decode of seeded bf16-valued data against the reference (the error model of the decode test above) and against
    /// the fp32 kernel on the same values, rounded once; returns the bf16 output and what the bf16 decode launched.
    /// </summary>
    private (BFloat16[] Output, long Launches) DecodeAgainstReferenceAndFp32(AttentionHeads shape, int[] cacheSlots, int[] lengths, int slots, int maxLength, int seed)
    {
        int b = lengths.Length;
        float scale = shape.DefaultScale;
        var keyCache = Bf16.Round(TestData.Normal(slots * maxLength * shape.KvWidth, seed));
        var valueCache = Bf16.Round(TestData.Normal(slots * maxLength * shape.KvWidth, seed + 1));
        var q = Bf16.Round(TestData.Normal(b * shape.QueryWidth, seed + 2));
        var y = Own(Backend.PoisonedBFloat16(b, shape.QueryWidth));
        var (qt, kc, vc) = (Own(Backend.BFloat16s(q, b, shape.QueryWidth)), Own(Backend.KeyCache(Own(Backend.BFloat16s(keyCache, slots * maxLength, shape.KvWidth)), slots, maxLength)),
            Own(Backend.BFloat16s(valueCache, slots, maxLength, shape.KvWidth)));
        var (slotTensor, lengthTensor) = (Ints(cacheSlots, b), Ints(lengths, b));
        var before = ((KernelBackend)Backend).Counters;
        Backend.AttentionDecode(qt, kc, vc, slotTensor, lengthTensor, shape, scale, y);
        long launches = (((KernelBackend)Backend).Counters - before).Launches;
        var expected = AttentionReference.Decode(TestData.ToDouble(q), TestData.ToDouble(keyCache), TestData.ToDouble(valueCache), cacheSlots, lengths, maxLength,
            shape.NumHeads, shape.NumKvHeads, shape.HeadDim, scale);
        Bf16Check.Close(y.ToFloatsWidened(), expected, Tol(OutputAtol), U, "bf16 decode output", [b, shape.NumHeads, shape.HeadDim]);
        var y32 = Poisoned(b, shape.QueryWidth);
        Backend.AttentionDecode(Floats(q, b, shape.QueryWidth), KeyCache(keyCache, slots, maxLength, shape.KvWidth), Floats(valueCache, slots, maxLength, shape.KvWidth),
            slotTensor, lengthTensor, shape, scale, y32);
        Bf16Bits.RoundedFromFp32(y, y32, Case, "decode output", [b, shape.NumHeads, shape.HeadDim]);
        return (y.ToBFloat16s(), launches);
    }

    [TestCaseSource(nameof(DecodeBatchCases))]
    public void DecodeOfAMixedBatchMatchesReferenceAndIsTheFp32KernelRoundedOnce(int heads, int kvHeads, int headDim)
    {
        const int batch = 33, slots = 8, maxLength = 1000;
        var lengths = Enumerable.Range(0, batch).Select(b => DecodeLengthPattern[b % DecodeLengthPattern.Length]).ToArray();
        var cacheSlots = Enumerable.Range(0, batch).Select(b => (5 * b + 3) % slots).ToArray();
        DecodeAgainstReferenceAndFp32(new AttentionHeads(heads, kvHeads, headDim), cacheSlots, lengths, slots, maxLength, 50);
    }

    /// <summary>One row with a 4097-position cache: split (a split launch and the combine), and the same bits on a second run.</summary>
    [Test]
    public void DecodeOfALongCacheAtBatchOneSplitsAndRepeatsItsBits()
    {
        var shape = new AttentionHeads(7, 1, 128);
        const int maxLength = 4097;
        var (first, launches) = DecodeAgainstReferenceAndFp32(shape, [0], [maxLength], 1, maxLength, 60);
        Assert.That(launches, Is.EqualTo(2), "a long cache at batch 1: the split kernel, then the combine");
        var (second, _) = DecodeAgainstReferenceAndFp32(shape, [0], [maxLength], 1, maxLength, 60);
        Bf16Bits.Equal(second, first, "a second decode of the same data");
    }

    /// <summary>
    /// The backward is deterministic: every output row has one writer summing in a fixed order (no atomics), so two runs
    /// give the same bits, which a bit-exact resume needs.
    /// </summary>
    [TestCase(64)]
    [TestCase(80)]
    [TestCase(128)]
    public void TwoRunsOfTheBackwardAreBitIdentical(int headDim)
    {
        var shape = new AttentionHeads(6, 2, headDim);
        int[] lengths = [70, 1, 129];
        int n = lengths.Sum();
        var qt = Own(Backend.BFloat16s(TestData.Normal(n * shape.QueryWidth, 21), n, shape.QueryWidth));
        var kt = Own(Backend.BFloat16s(TestData.Normal(n * shape.KvWidth, 22), n, shape.KvWidth));
        var vt = Own(Backend.BFloat16s(TestData.Normal(n * shape.KvWidth, 23), n, shape.KvWidth));
        var dy = Own(Backend.BFloat16s(TestData.Normal(n * shape.QueryWidth, 24), n, shape.QueryWidth));
        var seqs = Lengths(lengths);
        var y = Own(Backend.PoisonedBFloat16(n, shape.QueryWidth));
        var lse = Poisoned(n, shape.NumHeads);
        Backend.AttentionForward(qt, kt, vt, seqs, shape, shape.DefaultScale, y, lse);
        BFloat16[][] Run()
        {
            var dq = Own(Backend.PoisonedBFloat16(n, shape.QueryWidth));
            var dk = Own(Backend.PoisonedBFloat16(n, shape.KvWidth));
            var dv = Own(Backend.PoisonedBFloat16(n, shape.KvWidth));
            Backend.AttentionBackward(dy, qt, kt, vt, y, lse, seqs, shape, shape.DefaultScale, dq, dk, dv);
            return [dq.ToBFloat16s(), dk.ToBFloat16s(), dv.ToBFloat16s()];
        }
        var first = Run();
        var second = Run();
        string[] names = ["dq", "dk", "dv"];
        for (int i = 0; i < 3; i++) Bf16Bits.Equal(second[i], first[i], $"{names[i]} of a second backward run");
    }

    /// <summary>
    /// The backward is the gradient of the forward the device computes, not only close to the reference's: for a loss
    /// L = sum(dO * O(q, k, v)) evaluated with the kernels' own forward, a central difference along u = sign(gradient)
    /// (the kernels' dq, dk and dv) matches the directional derivative sum |gradient|. Along that direction the
    /// derivative is large against the noise of L (each output rounded to bf16), so a gradient with a wrong entry,
    /// sign or scale shows; a random direction would let the noise hide it. The step moves every input by one 1/64
    /// grid step, exactly representable in bf16 for these values.
    /// </summary>
    [TestCase(64)]
    [TestCase(128)]
    public void BackwardIsTheDerivativeOfTheKernelsForward(int headDim)
    {
        var shape = new AttentionHeads(4, 2, headDim);
        int[] lengths = [23, 9];
        int n = lengths.Sum();
        float scale = shape.DefaultScale;
        // Inputs on a grid of 1/64 in [-1, 1]: every grid value and every value +- 1/64 is a bf16.
        float[] Grid(int count, int seed) => TestData.Uniform(count, seed, -1f, 1f).Select(x => MathF.Round(x * 64f) / 64f).ToArray();
        var q = Grid(n * shape.QueryWidth, 31);
        var k = Grid(n * shape.KvWidth, 32);
        var v = Grid(n * shape.KvWidth, 33);
        var dy = Grid(n * shape.QueryWidth, 34);
        var seqs = Lengths(lengths);

        var qt = Own(Backend.BFloat16s(q, n, shape.QueryWidth));
        var kt = Own(Backend.BFloat16s(k, n, shape.KvWidth));
        var vt = Own(Backend.BFloat16s(v, n, shape.KvWidth));
        var yt = Own(Backend.PoisonedBFloat16(n, shape.QueryWidth));
        var lse = Poisoned(n, shape.NumHeads);
        Backend.AttentionForward(qt, kt, vt, seqs, shape, scale, yt, lse);
        var dq = Own(Backend.PoisonedBFloat16(n, shape.QueryWidth));
        var dk = Own(Backend.PoisonedBFloat16(n, shape.KvWidth));
        var dv = Own(Backend.PoisonedBFloat16(n, shape.KvWidth));
        Backend.AttentionBackward(Own(Backend.BFloat16s(dy, n, shape.QueryWidth)), qt, kt, vt, yt, lse, seqs, shape, scale, dq, dk, dv);
        var gradients = new[] { dq.ToFloatsWidened(), dk.ToFloatsWidened(), dv.ToFloatsWidened() };

        // One check per input: move only it along the sign of its gradient, so the derivative is sum |g| and a wrong
        // scale, sign or element of that gradient shows. Where the kernel's gradient is exactly 0 the direction is a
        // random sign, so a gradient that is wrongly zero meets a derivative that is not (moving every key by one
        // constant would not do: softmax ignores it).
        string[] names = ["dq", "dk", "dv"];
        for (int input = 0; input < 3; input++)
        {
            var g = gradients[input];
            var coin = TestData.Uniform(g.Length, 40 + input, -1f, 1f);
            var direction = g.Select((gi, i) => gi != 0 ? MathF.Sign(gi) : MathF.Sign(coin[i])).ToArray();
            double analytic = g.Sum(x => (double)Math.Abs(x));

            double Loss(float by)
            {
                float[] Moved(float[] x, int which) => which != input ? x : x.Select((xi, i) => xi + by * direction[i]).ToArray();
                var y = Own(Backend.PoisonedBFloat16(n, shape.QueryWidth));
                Backend.AttentionForward(Own(Backend.BFloat16s(Moved(q, 0), n, shape.QueryWidth)), Own(Backend.BFloat16s(Moved(k, 1), n, shape.KvWidth)),
                    Own(Backend.BFloat16s(Moved(v, 2), n, shape.KvWidth)), seqs, shape, scale, y, Poisoned(n, shape.NumHeads));
                var o = y.ToFloatsWidened();
                double sum = 0;
                for (int i = 0; i < o.Length; i++) sum += (double)o[i] * dy[i];
                return sum;
            }
            const float step = 1f / 64;
            double numeric = (Loss(step) - Loss(-step)) / (2 * step);
            TestContext.Out.WriteLine($"{names[input]}: along its sign, kernels' backward {analytic:G6}, central difference of the kernels' forward {numeric:G6}");
            // The loss's bf16 noise (about u |O| per output, random in sign) and the curvature over the step stay within 2.5 % (measured: under 1 %).
            Assert.That(Math.Abs(numeric - analytic), Is.LessThanOrEqualTo(0.025 * Math.Max(analytic, Math.Abs(numeric))),
                $"{names[input]}: directional derivative along sign({names[input]})");
        }
    }
}
