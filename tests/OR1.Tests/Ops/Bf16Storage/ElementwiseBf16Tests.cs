using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// The elementwise ops with bf16 storage (kernels/elementwise.cu). Inputs are bf16 values, so every op here is one
/// fp32 operation on exactly known operands followed by one rounding to bf16; the expected result is therefore
/// computed on the host the same way — the fp32 operation in .NET (IEEE single, no contraction possible for a single
/// add or multiply) and the rounding by <see cref="BFloat16"/>'s conversion — and required <b>bit for bit</b>
/// (a truncating store, a double rounding or a kernel reading the wrong dtype all fail). The bf16 results are also
/// within the analytic bound of the exact value: relative 2^-8 (bf16 keeps 8 significant bits, so round to nearest
/// errs by at most half an ulp, 2^-8 of the value) plus the fp32 rounding, 2^-24 relative.
/// <list type="bullet">
/// <item>Fill: every element is the value rounded once.</item>
/// <item>Add, Scale, AddBias: bit-identical to (BFloat16)(fp32 result); Add and Scale also in place.</item>
/// <item>BiasBackward: dBias is fp32 and accumulates; the column sums of bf16 dOutput run in fp32, so the tolerance is
/// the fp32 suite's (atol 1e-4, rtol 1e-5 for 2000 rows of |x| &lt;= 1): a dBias rounded to bf16 would be off by up
/// to 2^-8 relative, far outside it.</item>
/// <item>GatherRows/ScatterRows: byte copies, every bit (NaN payloads included) kept; rows take the kernels' 16-byte
/// pieces where source and destination rows share their offset from the 16-byte grid, single bytes elsewhere.</item>
/// </list>
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class ElementwiseBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>Values whose rounding is telling: ties (both parities), just off ties, overflow to Inf, subnormals, NaN, -0.</summary>
    private static readonly float[] TellingValues =
    [
        0.1f, -0.1f, 1f / 3, 3.14159265f, 65504f, 1e-3f, -0f,
        Bf16Bits.F(0x3F808000), // 1 + 2^-8: tie between 1 and 1 + 2^-7, rounds to even (down)
        Bf16Bits.F(0x3F818000), // 1 + 3 * 2^-8: tie, rounds to even (up)
        Bf16Bits.F(0x3F808001), // just above the tie: up
        Bf16Bits.F(0x3F807FFF), // just below the tie: down
        Bf16Bits.F(0x3FFFFFFF), // just below 2: rounds up across the power of two to 2
        Bf16Bits.F(0xBFFF8000), // -(2 - 2^-8): tie between odd 0xBFFF and even 0xC000 = -2
        Bf16Bits.F(0x7F7FFFFF), // float max: rounds up to +Inf
        Bf16Bits.F(0x00018000), // subnormal tie: rounds to even 0x0002
        1e-40f, float.Epsilon, float.PositiveInfinity, float.NegativeInfinity, float.NaN,
    ];

    [Test]
    public void FillRoundsTheValueOnce([ValueSource(nameof(TellingValues))] float value)
    {
        const int n = 1031;
        var x = Own(Backend.Allocate(DType.BFloat16, new TensorShape(n)));
        Backend.Fill(x, value);
        Bf16Bits.Equal(x.ToBFloat16s(), Enumerable.Repeat((BFloat16)value, n).ToArray(), $"fill({value:R} = 0x{BitConverter.SingleToUInt32Bits(value):X8})");
    }

    /// <summary>Lengths around the 8-element pack; offsets put the operands off the 16-byte grid, together or by different amounts.</summary>
    [TestCase(1)]
    [TestCase(37)]
    [TestCase(100_003)]
    [TestCase(67, 1, 1)]
    [TestCase(1003, 5, 5)]
    [TestCase(1003, 3, 0)]
    public void AddAndScaleRoundTheFp32ResultOnce(int n, int offset = 0, int otherOffset = 0)
    {
        var a = Bf16.Round(TestData.Normal(n, 1, std: 3));
        var b = Bf16.Round(TestData.Uniform(n, 2, -4, 4));
        // Special operands at the front (where they fit): overflow, infinities, NaN, ties of the sum.
        float[] specials = [3e38f, float.PositiveInfinity, float.NaN, 1f, -0f, 256f];
        float[] partners = [3e38f, 1f, 2f, 1f / 256, -0f, 1f];
        for (int i = 0; i < Math.Min(n, specials.Length); i++) (a[i], b[i]) = ((float)(BFloat16)specials[i], (float)(BFloat16)partners[i]);
        var at = ViewAt(offset, DType.BFloat16, a, n);
        var bt = ViewAt(otherOffset, DType.BFloat16, b, n);
        var sum = PoisonedViewAt(offset, DType.BFloat16, n);
        Backend.Add(at, bt, sum);
        var expectedSum = Bf16Bits.Round(a.Zip(b, (p, q) => p + q));
        Bf16Bits.Equal(sum.ToBFloat16s(), expectedSum, "a + b");
        AssertWithinRounding(sum, a.Zip(b, (p, q) => (double)p + q).ToArray(), "a + b against the exact sum");

        Backend.Scale(sum, -0.3f);
        var expectedScaled = Bf16Bits.Round(expectedSum.Select(v => (float)v * -0.3f));
        Bf16Bits.Equal(sum.ToBFloat16s(), expectedScaled, "scale(a + b, -0.3) in place");

        // In place, output aliasing both inputs.
        Backend.Add(at, at, at);
        Bf16Bits.Equal(at.ToBFloat16s(), Bf16Bits.Round(a.Select(p => p + p)), "a + a written over a");
    }

    /// <summary>Widths on the 8-element pack (64, 80, 896, 1536) and off it; offsets put x, dOutput, the bias and dBias off the 16-byte grid.</summary>
    [TestCase(3, 5)]
    [TestCase(2000, 37)]
    [TestCase(17, 896)]
    [TestCase(1, 64)]
    [TestCase(129, 80)]
    [TestCase(129, 66, 1, 1)]
    [TestCase(17, 67, 3, 0)]
    [TestCase(17, 1536, 5, 5)]
    public void BiasForwardAndBackward(int rows, int width, int offset = 0, int biasOffset = 0)
    {
        var data = Bf16.Round(TestData.Uniform(rows * width, 3));
        var bias = Bf16.Round(TestData.Uniform(width, 4, -2, 2));
        var x = ViewAt(offset, DType.BFloat16, data, rows, width);
        Backend.AddBias(x, ViewAt(biasOffset, DType.BFloat16, bias, width));
        var expected = new BFloat16[rows * width];
        var exact = new double[rows * width];
        for (int n = 0; n < rows; n++)
        for (int d = 0; d < width; d++)
        {
            expected[n * width + d] = (BFloat16)(data[n * width + d] + bias[d]);
            exact[n * width + d] = (double)data[n * width + d] + bias[d];
        }
        Bf16Bits.Equal(x.ToBFloat16s(), expected, "x + bias", [rows, width]);
        AssertWithinRounding(x, exact, "x + bias against the exact sum");

        var dBiasInit = TestData.Uniform(width, 5);
        var dBias = ViewAt(biasOffset, DType.Float32, dBiasInit, width);
        Backend.BiasBackward(ViewAt(offset, DType.BFloat16, data, rows, width), dBias);
        var sums = TestData.ToDouble(dBiasInit);
        for (int d = 0; d < width; d++)
            for (int n = 0; n < rows; n++) sums[d] += data[n * width + d];
        TensorAssert.Close(dBias.ToFloats(), sums, Tol(1e-4), Tol(1e-5), "dBias (fp32, accumulated onto its old value)");
    }

    [Test]
    public void BiasMustShareTheStorageDtype() =>
        Assert.That(() => Backend.AddBias(Own(Backend.PoisonedBFloat16(2, 3)), Zeros(3)),
            Throws.ArgumentException.With.Message.Contains("AddBias").And.Message.Contains("'bias'").And.Message.Contains("expected BFloat16"));

    [Test]
    public void BiasGradientMustBeFp32() =>
        Assert.That(() => Backend.BiasBackward(Own(Backend.PoisonedBFloat16(2, 3)), Own(Backend.PoisonedBFloat16(3))),
            Throws.ArgumentException.With.Message.Contains("BiasBackward").And.Message.Contains("'dBias'").And.Message.Contains("expected Float32"));

    /// <summary>Rows of 2 to 128 bytes; a source offset moves its rows off the 16-byte grid against the destination's.</summary>
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(33)]
    [TestCase(64)]
    [TestCase(64, 3)]
    [TestCase(64, 8)]
    public void GatherAndScatterCopyEveryBit(int width, int sourceOffset = 0)
    {
        const int sourceRows = 23, count = 40;
        // Raw bit patterns: any bf16 value, NaN payloads, -0 and subnormals included, must move unchanged.
        var random = new Random(width);
        var bits = Enumerable.Range(0, sourceRows * width).Select(_ => new BFloat16((ushort)random.Next(0x10000))).ToArray();
        var source = PoisonedViewAt(sourceOffset, DType.BFloat16, sourceRows, width);
        Backend.Upload<BFloat16>(bits, source);

        var indices = TestData.Ints(count, sourceRows, width + 1); // repeats included
        var gathered = Own(Backend.PoisonedBFloat16(count, width));
        Backend.GatherRows(source, Ints(indices, count), gathered);
        var expected = new BFloat16[count * width];
        for (int i = 0; i < count; i++) Array.Copy(bits, indices[i] * width, expected, i * width, width);
        Bf16Bits.Equal(gathered.ToBFloat16s(), expected, $"gathered rows of width {width}", [count, width], exactNaNs: true);

        // Scatter the first 9 source rows into a cache of 30 rows preset to 1.5: the other rows stay 1.5.
        const int scattered = 9, cacheRows = 30;
        var targets = TestData.DistinctInts(scattered, cacheRows, width + 2);
        var cache = Own(Backend.BFloat16s(Enumerable.Repeat(1.5f, cacheRows * width).ToArray(), cacheRows, width));
        var rows = Own(Backend.Allocate(DType.BFloat16, new TensorShape(scattered, width)));
        Backend.Upload<BFloat16>(bits.AsSpan(0, scattered * width), rows);
        Backend.ScatterRows(rows, Ints(targets, scattered), cache);
        var expectedCache = Enumerable.Repeat((BFloat16)1.5f, cacheRows * width).ToArray();
        for (int i = 0; i < scattered; i++) Array.Copy(bits, i * width, expectedCache, targets[i] * width, width);
        Bf16Bits.Equal(cache.ToBFloat16s(), expectedCache, $"cache after scattering rows of width {width}", [cacheRows, width], exactNaNs: true);
    }

    [Test]
    public void GatherDestinationMustShareTheSourceDtype() =>
        Assert.That(() => Backend.GatherRows(Own(Backend.PoisonedBFloat16(4, 2)), Ints([0, 1], 2), Zeros(2, 2)),
            Throws.ArgumentException.With.Message.Contains("GatherRows").And.Message.Contains("'destination'").And.Message.Contains("expected BFloat16"));

    /// <summary>|bf16 result - exact| &lt;= 2^-8 |exact| + fp32's 2^-24 relative (and NaN/Inf where the exact value is).</summary>
    private static void AssertWithinRounding(Tensor actual, double[] exact, string what)
    {
        var got = actual.ToFloatsWidened();
        // Where fp32 overflowed (3e38 + 3e38) the exact value is finite but the stored one is Inf: compare those through
        // the bit test above only.
        var keep = Enumerable.Range(0, exact.Length).Where(i => Math.Abs(exact[i]) <= float.MaxValue || !double.IsFinite(exact[i])).ToArray();
        TensorAssert.Close(keep.Select(i => got[i]).ToArray(), keep.Select(i => exact[i]).ToArray(), 0, Math.Pow(2, -8) + Math.Pow(2, -23), what);
    }
}
