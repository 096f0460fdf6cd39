using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// Attention with bf16 storage (q, k, v, output, dOutput, dq, dk, dv and the decode KV caches in bf16; the log-sum-exp
/// in fp32) against the double reference on the bf16-rounded inputs, so the reference sees exactly what the device stores.
/// Tolerances, with u = 2^-8 the unit roundoff of bf16 (8 significant bits: |bf16(x) - x| &lt;= u |x|):
/// <list type="bullet">
/// <item>output (forward and decode): every sum runs in fp32 on exact bf16 inputs, so the error is the final rounding to
/// bf16 plus fp32 noise: rtol u, atol 1e-4 (the fp32 part, ~1e-5 here). Observed: up to 96 % of that, all of it rounding.</item>
/// <item>log-sum-exp: fp32 and computed from exact bf16 inputs, so the fp32 tests' tolerances (atol 2e-5, rtol 1e-5) hold.
/// Observed: max |diff| 7e-7.</item>
/// <item>dv = sum_i P_ij dO_i involves no stored activation: rtol u, atol 1e-3 for the fp32 sums of up to 7 heads x 65 rows
/// of values up to ~10. Observed: pure rounding (needs atol 0 at rtol u).</item>
/// <item>dq, dk: D_i = dO_i . O_i is computed, as FlashAttention-2 does, from the bf16-rounded output O, so every dS_ij is
/// off by P_ij (D_i - D_i exact) with |D_i - D_i exact| up to u sum_d |dO_d O_d|; this absolute error reaches dq and dk through
/// scale * sum_j P_ij k_j (and sum_i P_ij q_i over the G heads). rtol u for the final rounding, atol 1.5e-2: these data
/// need at most 7.5e-3 at rtol u.</item>
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
    ];

    /// <summary>bf16's unit roundoff: rounding to bf16 moves a value by at most this fraction of itself.</summary>
    private const double U = 1.0 / 256;
    private const double OutputAtol = 1e-4;
    private const double LseAtol = 2e-5, LseRtol = 1e-5;
    private const double DvAtol = 1e-3;
    private const double DqDkAtol = 1.5e-2;

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
        Bf16Check.Close(y.ToFloatsWidened(), refY, Tol(OutputAtol), U, "bf16 attention output", [n, heads, headDim]);
        Bf16Check.Close(lse.ToFloats(), refLse, Tol(LseAtol), Tol(LseRtol), "log-sum-exp (fp32)", [n, heads]);

        var dq = Own(Backend.PoisonedBFloat16(n, shape.QueryWidth));
        var dk = Own(Backend.PoisonedBFloat16(n, shape.KvWidth));
        var dv = Own(Backend.PoisonedBFloat16(n, shape.KvWidth));
        Backend.AttentionBackward(Own(Backend.BFloat16s(dy, n, shape.QueryWidth)), qt, kt, vt, y, lse, seqs, shape, scale, dq, dk, dv);
        var (refDq, refDk, refDv) = AttentionReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v),
            offsets, heads, kvHeads, headDim, scale);
        Bf16Check.Close(dq.ToFloatsWidened(), refDq, DqDkAtol, U, "bf16 dq", [n, heads, headDim]);
        Bf16Check.Close(dk.ToFloatsWidened(), refDk, DqDkAtol, U, "bf16 dk", [n, kvHeads, headDim]);
        Bf16Check.Close(dv.ToFloatsWidened(), refDv, Tol(DvAtol), U, "bf16 dv", [n, kvHeads, headDim]);
    }

    /// <summary>
    /// The bf16 kernels are the fp32 kernels' arithmetic with one rounding at each store: on the same bf16-valued inputs
    /// (held as Float32 for the fp32 run, and the backward given the bf16-rounded output), the bf16 output and gradients
    /// are the fp32 ones rounded to bf16 (bit for bit on the emulator, within one bf16 ulp on a GPU), and the fp32
    /// log-sum-exp is the fp32 kernel's. Far tighter than the comparison with the reference: a bf16-only slip (a wrong
    /// index, a truncating conversion, a lost term) cannot hide in the bf16 tolerance.
    /// </summary>
    [TestCaseSource(nameof(Cases))]
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
        var kc = Own(Backend.BFloat16s(keyCache, slots, maxLength, shape.KvWidth));
        var vc = Own(Backend.BFloat16s(valueCache, slots, maxLength, shape.KvWidth));
        var y = Own(Backend.PoisonedBFloat16(b, shape.QueryWidth));
        Backend.AttentionDecode(Own(Backend.BFloat16s(q, b, shape.QueryWidth)), kc, vc, Ints(cacheSlots, b), Ints(lengths, b), shape, scale, y);
        var expected = AttentionReference.Decode(TestData.ToDouble(q), TestData.ToDouble(keyCache), TestData.ToDouble(valueCache), cacheSlots, lengths, maxLength,
            heads, kvHeads, headDim, scale);
        Bf16Check.Close(y.ToFloatsWidened(), expected, Tol(OutputAtol), U, "bf16 decode output", [b, heads, headDim]);
        // ... and is the fp32 kernel's result on the same bf16-valued data, rounded once.
        var y32 = Poisoned(b, shape.QueryWidth);
        Backend.AttentionDecode(Floats(q, b, shape.QueryWidth), Floats(keyCache, slots, maxLength, shape.KvWidth), Floats(valueCache, slots, maxLength, shape.KvWidth),
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
        // Both kernels fold the same keys in the same 32-key tiles in the same fp32 order, so on the emulator they agree bit
        // for bit; on a GPU a multiply-add contracted differently in the two kernels can move a value across a bf16
        // rounding boundary: one bf16 ulp.
        Bf16Bits.Within(y.ToBFloat16s().AsSpan(1 * shape.QueryWidth, shape.QueryWidth), full.ToBFloat16s().AsSpan((len - 1) * shape.QueryWidth, shape.QueryWidth),
            Case.Name == "Cuda" ? 1 : 0, "decode vs the last row of the packed forward", [heads, headDim]);
    }
}
