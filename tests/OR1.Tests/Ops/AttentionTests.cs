using OR1.Native;
using OR1.Native.Kernels;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class AttentionTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>(sequence lengths, query heads, kv heads, head dim): lengths 1 and mixed batches, 7:1 GQA, odd head dims.</summary>
    private static readonly object[] Cases =
    [
        new object[] { new[] { 1 }, 1, 1, 4 },
        new object[] { new[] { 5 }, 7, 1, 5 },
        new object[] { new[] { 1, 3, 17, 2 }, 4, 2, 12 },
        new object[] { new[] { 9, 1, 33 }, 8, 8, 16 },
        new object[] { new[] { 70, 3 }, 6, 2, 64 },
        new object[] { new[] { 2, 0, 4 }, 2, 1, 8 },
    ];

    [TestCaseSource(nameof(Cases))]
    public void ForwardAndBackwardMatchReference(int[] lengths, int heads, int kvHeads, int headDim)
    {
        var shape = new AttentionHeads(heads, kvHeads, headDim);
        int n = lengths.Sum();
        var offsets = TestData.OffsetsFromLengths(lengths);
        float scale = shape.DefaultScale;
        var q = TestData.Normal(n * shape.QueryWidth, 1);
        var k = TestData.Normal(n * shape.KvWidth, 2);
        var v = TestData.Normal(n * shape.KvWidth, 3);
        var dy = TestData.Normal(n * shape.QueryWidth, 4);
        var qt = Floats(q, n, shape.QueryWidth);
        var kt = Floats(k, n, shape.KvWidth);
        var vt = Floats(v, n, shape.KvWidth);
        var seqs = Lengths(lengths);
        var y = Poisoned(n, shape.QueryWidth);
        var lse = Poisoned(n, heads);
        Backend.AttentionForward(qt, kt, vt, seqs, shape, scale, y, lse);
        var (refY, refLse) = AttentionReference.Forward(TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v), offsets, heads, kvHeads, headDim, scale);
        TensorAssert.Close(y.ToFloats(), refY, Tol(2e-5), Tol(1e-4), "attention output", [n, heads, headDim]);
        TensorAssert.Close(lse.ToFloats(), refLse, Tol(2e-5), Tol(1e-5), "log-sum-exp", [n, heads]);

        var dq = Poisoned(n, shape.QueryWidth);
        var dk = Poisoned(n, shape.KvWidth);
        var dv = Poisoned(n, shape.KvWidth);
        Backend.AttentionBackward(Floats(dy, n, shape.QueryWidth), qt, kt, vt, y, lse, seqs, shape, scale, dq, dk, dv);
        var (refDq, refDk, refDv) = AttentionReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v),
            offsets, heads, kvHeads, headDim, scale);
        TensorAssert.Close(dq.ToFloats(), refDq, Tol(5e-5), Tol(2e-4), "dq", [n, heads, headDim]);
        TensorAssert.Close(dk.ToFloats(), refDk, Tol(5e-5), Tol(2e-4), "dk", [n, kvHeads, headDim]);
        TensorAssert.Close(dv.ToFloats(), refDv, Tol(5e-5), Tol(2e-4), "dv", [n, kvHeads, headDim]);
    }

    [Test]
    public void BackwardMatchesFiniteDifferencesOfForward()
    {
        int[] lengths = [3, 6];
        var shape = new AttentionHeads(4, 2, 6);
        int n = 9;
        var q = TestData.Normal(n * shape.QueryWidth, 11);
        var k = TestData.Normal(n * shape.KvWidth, 12);
        var v = TestData.Normal(n * shape.KvWidth, 13);
        var projection = TestData.Uniform(n * shape.QueryWidth, 14);
        var seqs = Lengths(lengths);
        double Objective(float[] qs, float[] ks, float[] vs)
        {
            var y = Zeros(n, shape.QueryWidth);
            Backend.AttentionForward(Floats(qs, n, shape.QueryWidth), Floats(ks, n, shape.KvWidth), Floats(vs, n, shape.KvWidth), seqs, shape, 0.4f, y, Zeros(n, 4));
            return FloatGradientCheck.Project(y.ToFloats(), projection);
        }
        var qt = Floats(q, n, shape.QueryWidth);
        var kt = Floats(k, n, shape.KvWidth);
        var vt = Floats(v, n, shape.KvWidth);
        var output = Zeros(n, shape.QueryWidth);
        var lse = Zeros(n, 4);
        Backend.AttentionForward(qt, kt, vt, seqs, shape, 0.4f, output, lse);
        var dq = Zeros(n, shape.QueryWidth);
        var dk = Zeros(n, shape.KvWidth);
        var dv = Zeros(n, shape.KvWidth);
        Backend.AttentionBackward(Floats(projection, n, shape.QueryWidth), qt, kt, vt, output, lse, seqs, shape, 0.4f, dq, dk, dv);
        FloatGradientCheck.Directional(qs => Objective(qs, k, v), q, dq.ToFloats(), "attention dq");
        FloatGradientCheck.Directional(ks => Objective(q, ks, v), k, dk.ToFloats(), "attention dk");
        FloatGradientCheck.Directional(vs => Objective(q, k, vs), v, dv.ToFloats(), "attention dv");
    }

    [Test]
    public void BackwardIsDeterministicForOneLongSequence()
    {
        SkipIfLarge(true, "a 300-token sequence");
        var shape = new AttentionHeads(2, 1, 32);
        const int n = 300;
        var q = Floats(TestData.Normal(n * 64, 1), n, 64);
        var k = Floats(TestData.Normal(n * 32, 2), n, 32);
        var v = Floats(TestData.Normal(n * 32, 3), n, 32);
        var dy = Floats(TestData.Normal(n * 64, 4), n, 64);
        var seqs = Lengths(n);
        var y = Zeros(n, 64);
        var lse = Zeros(n, 2);
        Backend.AttentionForward(q, k, v, seqs, shape, shape.DefaultScale, y, lse);
        float[][] Run()
        {
            var dq = Zeros(n, 64); var dk = Zeros(n, 32); var dv = Zeros(n, 32);
            Backend.AttentionBackward(dy, q, k, v, y, lse, seqs, shape, shape.DefaultScale, dq, dk, dv);
            return [dq.ToFloats(), dk.ToFloats(), dv.ToFloats()];
        }
        var first = Run();
        var second = Run();
        for (int i = 0; i < 3; i++) Assert.That(second[i], Is.EqualTo(first[i]), $"gradient {i} differs between runs");
    }

    [Test]
    public void DecodeMatchesReferenceAndTheLastRowOfAFullForward()
    {
        var shape = new AttentionHeads(7, 1, 12);
        const int slots = 3, maxLength = 20;
        int[] lengths = [1, 20, 9];
        int[] cacheSlots = [2, 0, 1];
        int b = lengths.Length;
        var keyCache = TestData.Normal(slots * maxLength * shape.KvWidth, 5);
        var valueCache = TestData.Normal(slots * maxLength * shape.KvWidth, 6);
        var q = TestData.Normal(b * shape.QueryWidth, 7);
        var y = Poisoned(b, shape.QueryWidth);
        var kc = KeyCache(keyCache, slots, maxLength, shape.KvWidth);
        var vc = Floats(valueCache, slots, maxLength, shape.KvWidth);
        Backend.AttentionDecode(Floats(q, b, shape.QueryWidth), kc, vc, Ints(cacheSlots, b), Ints(lengths, b), shape, 0.3f, y);
        var expected = AttentionReference.Decode(TestData.ToDouble(q), TestData.ToDouble(keyCache), TestData.ToDouble(valueCache), cacheSlots, lengths, maxLength,
            shape.NumHeads, shape.NumKvHeads, shape.HeadDim, 0.3);
        TensorAssert.Close(y.ToFloats(), expected, Tol(2e-5), Tol(1e-4), "decode output", [b, shape.NumHeads, shape.HeadDim]);

        // The same row through the packed forward: sequence = cache slot 0's 20 rows, query = its last row's q.
        int len = 20;
        var kRows = keyCache.AsSpan(0, len * shape.KvWidth).ToArray();
        var vRows = valueCache.AsSpan(0, len * shape.KvWidth).ToArray();
        var qRows = TestData.Normal(len * shape.QueryWidth, 8);
        Array.Copy(q, 1 * shape.QueryWidth, qRows, (len - 1) * shape.QueryWidth, shape.QueryWidth);
        var full = Zeros(len, shape.QueryWidth);
        Backend.AttentionForward(Floats(qRows, len, shape.QueryWidth), Floats(kRows, len, shape.KvWidth), Floats(vRows, len, shape.KvWidth),
            Lengths(len), shape, 0.3f, full, Zeros(len, shape.NumHeads));
        var lastRow = full.ToFloats().AsSpan((len - 1) * shape.QueryWidth, shape.QueryWidth).ToArray();
        var decodedRow = y.ToFloats().AsSpan(1 * shape.QueryWidth, shape.QueryWidth).ToArray();
        TensorAssert.Close(decodedRow, lastRow, 1e-5, 1e-5, "decode vs last row of forward");
    }

    /// <summary>Cache lengths mixed in one decode batch: a single position, both sides of 16 (15, 16, 17), and long ones
    /// (1000 is the cache's capacity) that the kernels cut into several splits where the launch shape splits at all.</summary>
    private static readonly int[] DecodeLengthPattern = [1, 15, 16, 17, 1000, 257, 511, 2, 640];

    /// <summary>(query heads, kv heads, head dim): GQA 7, 2 and 1; head dims 64, 80 (10 of 16 lanes of a row group hold
    /// columns) and 128.</summary>
    private static readonly object[] DecodeBatchCases =
    [
        new object[] { 7, 1, 64 },
        new object[] { 4, 2, 80 },
        new object[] { 2, 2, 128 },
    ];

    /// <summary>
    /// Decodes q [batch, QueryWidth] against seeded caches [slots, maxLength, KvWidth] and the double reference; Launches is
    /// what the decode call launched on a kernel backend (-1 on the others).
    /// </summary>
    private (float[] Output, double[] Expected, long Launches) Decode(AttentionHeads shape, int[] cacheSlots, int[] lengths, int slots, int maxLength, float scale, int seed)
    {
        int batch = lengths.Length;
        var keyCache = TestData.Normal(slots * maxLength * shape.KvWidth, seed);
        var valueCache = TestData.Normal(slots * maxLength * shape.KvWidth, seed + 1);
        var q = TestData.Normal(batch * shape.QueryWidth, seed + 2);
        var y = Poisoned(batch, shape.QueryWidth);
        var (qt, kc, vc) = (Floats(q, batch, shape.QueryWidth), KeyCache(keyCache, slots, maxLength, shape.KvWidth), Floats(valueCache, slots, maxLength, shape.KvWidth));
        var (slotTensor, lengthTensor) = (Ints(cacheSlots, batch), Ints(lengths, batch));
        var before = (Backend as KernelBackend)?.Counters;
        Backend.AttentionDecode(qt, kc, vc, slotTensor, lengthTensor, shape, scale, y);
        long launches = Backend is KernelBackend kernels ? (kernels.Counters - before!.Value).Launches : -1;
        var expected = AttentionReference.Decode(TestData.ToDouble(q), TestData.ToDouble(keyCache), TestData.ToDouble(valueCache), cacheSlots, lengths, maxLength,
            shape.NumHeads, shape.NumKvHeads, shape.HeadDim, scale);
        return (y.ToFloats(), expected, launches);
    }

    [TestCaseSource(nameof(DecodeBatchCases))]
    public void DecodeMatchesReferenceForABatchOfMixedCacheLengths(int heads, int kvHeads, int headDim)
    {
        SkipIfLarge(true, "33 decode rows with caches of up to 1000 positions");
        var shape = new AttentionHeads(heads, kvHeads, headDim);
        const int batch = 33, slots = 8, maxLength = 1000;
        var lengths = Enumerable.Range(0, batch).Select(b => DecodeLengthPattern[b % DecodeLengthPattern.Length]).ToArray();
        // Rows share slots (a prompt's samples read one prefix), in an order unlike the rows'.
        var cacheSlots = Enumerable.Range(0, batch).Select(b => (5 * b + 3) % slots).ToArray();
        var (output, expected, _) = Decode(shape, cacheSlots, lengths, slots, maxLength, shape.DefaultScale, 30);
        TensorAssert.Close(output, expected, Tol(2e-5), Tol(1e-4), "decode output", [batch, heads, headDim]);
    }

    /// <summary>
    /// One row with a 4097-position cache: the kernel backends cut it into several splits (a split launch and a combine,
    /// two launches; one launch for a short cache) and the Cpu backend into several chunks, merged by their log-sum-exp in a
    /// fixed order, so a second run gives the same bits.
    /// </summary>
    [Test]
    public void DecodeSplitsALongCacheAtBatchOneAndRepeatsItsBits()
    {
        SkipIfLarge(true, "a 4097-position cache");
        var shape = new AttentionHeads(7, 1, 128);
        const int maxLength = 4097;
        var (first, expected, launches) = Decode(shape, [0], [maxLength], 1, maxLength, shape.DefaultScale, 40);
        if (launches >= 0) Assert.That(launches, Is.EqualTo(2), "a long cache at batch 1: the split kernel, then the combine");
        TensorAssert.Close(first, expected, Tol(2e-5), Tol(1e-4), "decode output", [1, shape.NumHeads, shape.HeadDim]);
        var (second, _, _) = Decode(shape, [0], [maxLength], 1, maxLength, shape.DefaultScale, 40);
        Assert.That(second, Is.EqualTo(first), "a second decode of the same data");

        var (shortOutput, shortExpected, shortLaunches) = Decode(shape, [0], [17], 1, 17, shape.DefaultScale, 41);
        if (shortLaunches >= 0) Assert.That(shortLaunches, Is.EqualTo(1), "a 17-position cache: one split, no combine");
        TensorAssert.Close(shortOutput, shortExpected, Tol(2e-5), Tol(1e-4), "decode output (17 positions)", [1, shape.NumHeads, shape.HeadDim]);
    }
}
