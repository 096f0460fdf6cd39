using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// <see cref="IBackend.Convert"/> between Float32 and BFloat16 (kernels/elementwise.cu's convert_f32_bf16 and
/// convert_bf16_f32). No tolerance anywhere: Float32 to BFloat16 must be round to nearest, ties to even, bit-identical
/// to the host's <c>(BFloat16)value</c> (src/OR1.Native/Tensors/BFloat16.cs) for every non-NaN value, with NaN staying
/// a NaN (any NaN: a GPU writes the canonical 0x7FFF); BFloat16 to Float32 is exact (the bf16 bits become the upper
/// half of the float). The expected bits of the telling cases are also written out by hand, so the host conversion the
/// device is compared with is itself checked.
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class ConvertBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>(float bits, the bf16 bits round to nearest even gives).</summary>
    private static readonly (uint Float, ushort Bf16)[] HandRounded =
    [
        (0x3F800000, 0x3F80), // 1: exact
        (0x3F808000, 0x3F80), // 1 + 2^-8: exactly halfway between 0x3F80 and 0x3F81: ties to the even 0x3F80
        (0x3F818000, 0x3F82), // 1 + 3 * 2^-8: halfway between 0x3F81 and 0x3F82: ties to the even 0x3F82 (up)
        (0xBF818000, 0xBF82), // the same, negative
        (0x3F808001, 0x3F81), // one float ulp above the tie: up
        (0x3F807FFF, 0x3F80), // one float ulp below the tie: down
        (0x3F81FFFF, 0x3F82), // just below 0x3F82: up
        (0x3FFF8000, 0x4000), // 2 - 2^-8: halfway between odd 0x3FFF (2 - 2^-7) and 2: up across the power of two
        (0x3FFFFFFF, 0x4000), // just below 2: up across the power of two
        (0x3F7F8000, 0x3F80), // 1 - 2^-9: halfway between odd 0x3F7F and 1: up to 1
        (0x477FE000, 0x4780), // 65504 (fp16 max) rounds up to 65536
        (0x7F7F0000, 0x7F7F), // bf16 max: exact
        (0x7F7F7FFF, 0x7F7F), // just below the tie with Inf: stays finite
        (0x7F7F8000, 0x7F80), // halfway between bf16 max (odd) and Inf: ties to even = +Inf
        (0x7F7FFFFF, 0x7F80), // float max: +Inf
        (0xFF7FFFFF, 0xFF80), // -float max: -Inf
        (0x7F800000, 0x7F80), // +Inf
        (0xFF800000, 0xFF80), // -Inf
        (0x00000000, 0x0000), // +0
        (0x80000000, 0x8000), // -0
        (0x00000001, 0x0000), // smallest subnormal: 0
        (0x00008000, 0x0000), // subnormal tie between 0 and 0x0001: even 0
        (0x00018000, 0x0002), // subnormal tie between 0x0001 and 0x0002: even 0x0002
        (0x007FFFFF, 0x0080), // largest subnormal rounds up to the smallest normal
        (0x00800000, 0x0080), // smallest normal: exact
        (0x3DCCCCCD, 0x3DCD), // 0.1
        (0xC0490FDB, 0xC049), // -pi
    ];

    [Test]
    public void HandPickedValuesRoundToNearestEven()
    {
        var floats = HandRounded.Select(c => Bf16Bits.F(c.Float)).ToArray();
        var expected = HandRounded.Select(c => new BFloat16(c.Bf16)).ToArray();
        // The host reference agrees with the hand-rounded bits, so "equal to (BFloat16)v" below means round to nearest even.
        Bf16Bits.Equal(Bf16Bits.Round(floats), expected, "host (BFloat16)v against the hand-rounded bits");
        Bf16Bits.Equal(ConvertToBf16(floats), expected, "Convert Float32 -> BFloat16");
    }

    [Test]
    public void TiesBetweenEveryPairOfNeighboursRoundToEven()
    {
        // For 4096 bf16 values b spread over every exponent and both signs: the float exactly halfway to the next
        // bf16 (low half 0x8000), and one float ulp either side of it.
        var random = new Random(11);
        var floats = new List<float>();
        var expected = new List<BFloat16>();
        for (int i = 0; i < 4096; i++)
        {
            ushort b = (ushort)random.Next(0x10000);
            if ((b & 0x7F80) == 0x7F80 || (b & 0x7FFF) == 0x7F7F) continue; // Inf/NaN, or the max (its next is Inf)
            uint tie = ((uint)b << 16) | 0x8000;
            ushort even = (b & 1) == 0 ? b : (ushort)(b + 1);
            floats.AddRange([Bf16Bits.F(tie), Bf16Bits.F(tie - 1), Bf16Bits.F(tie + 1)]);
            expected.AddRange([new BFloat16(even), new BFloat16(b), new BFloat16((ushort)(b + 1))]);
        }
        Bf16Bits.Equal(Bf16Bits.Round(floats), expected.ToArray(), "host (BFloat16)v at ties");
        Bf16Bits.Equal(ConvertToBf16(floats.ToArray()), expected.ToArray(), "Convert Float32 -> BFloat16 at ties and next to them");
    }

    [Test]
    public void RandomFloatsMatchTheHostConversion()
    {
        // 200003 random bit patterns: every exponent (subnormals, huge values rounding to Inf) and NaNs with any payload.
        var random = new Random(12);
        var floats = Enumerable.Range(0, 200_003).Select(_ => Bf16Bits.F((uint)random.NextInt64(0x1_0000_0000L))).ToArray();
        var converted = ConvertToBf16(floats);
        Bf16Bits.Equal(converted, Bf16Bits.Round(floats), "Convert Float32 -> BFloat16 of random bit patterns");
        int nans = floats.Count(float.IsNaN);
        Assert.That(nans, Is.GreaterThan(100), "the sample holds NaNs with many payloads");
        Assert.That(converted.Where((_, i) => float.IsNaN(floats[i])).All(Bf16Bits.IsNaN), "every NaN stays a NaN");
    }

    /// <summary>
    /// Views at element offsets, off the 16-byte grid together (a scalar head, then packs of 8) or by different amounts
    /// (the scalar path): both directions convert exactly as the aligned tensors do.
    /// </summary>
    [TestCase(0, 0)]
    [TestCase(1, 1)]
    [TestCase(5, 5)]
    [TestCase(1, 2)]
    [TestCase(0, 3)]
    public void ViewsAtAnyOffsetConvertTheSame(int floatOffset, int bf16Offset)
    {
        const int n = 1003;
        var random = new Random(13);
        var floats = Enumerable.Range(0, n).Select(_ => Bf16Bits.F((uint)random.NextInt64(0x1_0000_0000L))).ToArray();
        var bf16 = PoisonedViewAt(bf16Offset, DType.BFloat16, n);
        Backend.Convert(ViewAt(floatOffset, DType.Float32, floats, n), bf16);
        var converted = bf16.ToBFloat16s();
        Bf16Bits.Equal(converted, Bf16Bits.Round(floats), $"Convert Float32 (offset {floatOffset}) -> BFloat16 (offset {bf16Offset})");

        var widened = PoisonedViewAt(floatOffset, DType.Float32, n);
        Backend.Convert(bf16, widened);
        var back = widened.ToFloats();
        for (int i = 0; i < n; i++)
        {
            uint got = BitConverter.SingleToUInt32Bits(back[i]);
            bool ok = Bf16Bits.IsNaN(converted[i]) ? float.IsNaN(back[i]) : got == (uint)converted[i].Bits << 16;
            if (!ok) Assert.Fail($"element {i}: BFloat16 0x{converted[i].Bits:X4} widened to 0x{got:X8}");
        }
    }

    [Test]
    public void NaNsStayNaNs()
    {
        // Quiet and signalling NaNs of both signs, including payloads only in the low 16 bits (a truncation would make
        // those Inf) and the payload that a carry of the rounding would push into the exponent.
        float[] nans = [float.NaN, Bf16Bits.F(0x7FC00000), Bf16Bits.F(0xFFC00000), Bf16Bits.F(0x7F800001), Bf16Bits.F(0xFF800001),
            Bf16Bits.F(0x7F808000), Bf16Bits.F(0x7FFFFFFF), Bf16Bits.F(0xFFFFFFFF), Bf16Bits.F(0x7F80FFFF)];
        var converted = ConvertToBf16(nans);
        for (int i = 0; i < nans.Length; i++)
            Assert.That(Bf16Bits.IsNaN(converted[i]), $"0x{BitConverter.SingleToUInt32Bits(nans[i]):X8} became 0x{converted[i].Bits:X4}, not a NaN");
        // And back: a bf16 NaN widens to a float NaN.
        var back = ConvertToFloat(converted);
        Assert.That(back, Is.All.NaN);
    }

    [Test]
    public void EveryBf16WidensExactly()
    {
        var all = Enumerable.Range(0, 0x10000).Select(b => new BFloat16((ushort)b)).ToArray();
        var widened = ConvertToFloat(all);
        for (int b = 0; b < all.Length; b++)
        {
            uint got = BitConverter.SingleToUInt32Bits(widened[b]);
            bool ok = Bf16Bits.IsNaN(all[b]) ? float.IsNaN(widened[b]) : got == (uint)b << 16;
            if (!ok) Assert.Fail($"BFloat16 0x{b:X4} widened to 0x{got:X8}, expected 0x{(uint)b << 16:X8}");
        }
        // And every non-NaN bf16, widened, converts back to itself.
        var roundTrip = ConvertToBf16(widened);
        var nonNaN = Enumerable.Range(0, all.Length).Where(b => !Bf16Bits.IsNaN(all[b])).ToArray();
        Bf16Bits.Equal(nonNaN.Select(b => roundTrip[b]).ToArray(), nonNaN.Select(b => all[b]).ToArray(), "bf16 -> f32 -> bf16");
    }

    [Test]
    public void EqualDtypesCopyAndShapesMayDiffer()
    {
        var bits = Enumerable.Range(0, 12).Select(i => new BFloat16((ushort)(0x7FC1 + i * 0x0F11))).ToArray();
        var source = Own(Backend.Allocate(DType.BFloat16, new TensorShape(3, 4)));
        Backend.Upload<BFloat16>(bits, source);
        var destination = Own(Backend.PoisonedBFloat16(12));
        Backend.Convert(source, destination);
        Bf16Bits.Equal(destination.ToBFloat16s(), bits, "bf16 -> bf16 copies every bit", exactNaNs: true);
        var f = Floats([1.5f, -2f, 3f], 3);
        var g = Poisoned(1, 3);
        Backend.Convert(f, g);
        Assert.That(g.ToFloats(), Is.EqualTo(new[] { 1.5f, -2f, 3f }));
    }

    [Test]
    public void ElementCountMismatchIsRefused() =>
        Assert.That(() => Backend.Convert(Zeros(3, 4), Own(Backend.PoisonedBFloat16(11))),
            Throws.ArgumentException.With.Message.Contains("Convert").And.Message.Contains("'destination'").And.Message.Contains("11 elements"));

    [Test]
    public void NonStorageDtypeIsRefused() =>
        Assert.That(() => Backend.Convert(Ints([1, 2], 2), Own(Backend.PoisonedBFloat16(2))),
            Throws.ArgumentException.With.Message.Contains("Convert").And.Message.Contains("'source'").And.Message.Contains("Int32"));

    private BFloat16[] ConvertToBf16(float[] values)
    {
        var source = Floats(values, values.Length);
        var destination = Own(Backend.PoisonedBFloat16(values.Length));
        Backend.Convert(source, destination);
        return destination.ToBFloat16s();
    }

    private float[] ConvertToFloat(BFloat16[] values)
    {
        var source = Own(Backend.Allocate(DType.BFloat16, new TensorShape(values.Length)));
        Backend.Upload<BFloat16>(values, source);
        var destination = Poisoned(values.Length);
        Backend.Convert(source, destination);
        return destination.ToFloats();
    }
}
