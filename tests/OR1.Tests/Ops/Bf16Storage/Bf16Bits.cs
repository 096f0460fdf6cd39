using System.Globalization;
using System.Text;
using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// Bit-level checks of BFloat16 results, for the ops whose bf16 output is exactly determined: copies (gather,
/// scatter, embedding rows), conversions, and one fp32 operation rounded once (fill, add, scale, bias). A failure
/// lists the elements with their bits, so a truncation (off by one in the last bit) is visible at a glance.
/// </summary>
internal static class Bf16Bits
{
    private const int Listed = 8;

    /// <summary>The raw BFloat16 values of a tensor.</summary>
    public static BFloat16[] ToBFloat16s(this Tensor t)
    {
        Assert.That(t.DType, Is.EqualTo(DType.BFloat16), "ToBFloat16s needs a BFloat16 tensor");
        var raw = new BFloat16[t.ElementCount];
        t.Backend.Download<BFloat16>(t, raw);
        return raw;
    }

    /// <summary>Each value rounded to bf16 by the host's reference conversion (<see cref="BFloat16"/>'s explicit operator).</summary>
    public static BFloat16[] Round(IEnumerable<float> values) => values.Select(v => (BFloat16)v).ToArray();

    /// <summary>The float whose IEEE binary32 bits are <paramref name="bits"/>.</summary>
    public static float F(uint bits) => BitConverter.UInt32BitsToSingle(bits);

    public static bool IsNaN(BFloat16 v) => (v.Bits & 0x7FFF) > 0x7F80;

    /// <summary>
    /// Bit-identical, except that where <paramref name="expected"/> is a NaN any NaN is accepted (a GPU writes the
    /// canonical NaN 0x7FFF, the host keeps the payload: the same meaning), unless <paramref name="exactNaNs"/> (copies
    /// must move every bit).
    /// </summary>
    public static void Equal(ReadOnlySpan<BFloat16> actual, ReadOnlySpan<BFloat16> expected, string what, int[]? shape = null,
        bool exactNaNs = false) => Within(actual, expected, 0, what, shape, exactNaNs);

    /// <summary>
    /// At most <paramref name="ulps"/> bf16 units in the last place apart (the distance between the bit patterns of two
    /// values of the same sign; +0 and -0 are 0 apart). NaN must meet NaN.
    /// </summary>
    public static void Within(ReadOnlySpan<BFloat16> actual, ReadOnlySpan<BFloat16> expected, int ulps, string what, int[]? shape = null,
        bool exactNaNs = false)
    {
        if (actual.Length != expected.Length)
        {
            Assert.Fail($"{what}: length mismatch: actual has {actual.Length} elements, expected {expected.Length}");
            return;
        }
        int failures = 0;
        var listed = new StringBuilder();
        for (int i = 0; i < actual.Length; i++)
        {
            BFloat16 a = actual[i], e = expected[i];
            bool ok = IsNaN(e) && !exactNaNs ? IsNaN(a) : a.Bits == e.Bits || (!IsNaN(a) && !IsNaN(e) && Distance(a, e) <= ulps);
            if (ok) continue;
            if (failures++ < Listed)
                listed.Append(CultureInfo.InvariantCulture,
                    $"\n    {Index(i, shape)}: actual 0x{a.Bits:X4} ({a}), expected 0x{e.Bits:X4} ({e})");
        }
        if (failures == 0) return;
        string rule = ulps == 0 ? "bit-identical" : $"within {ulps} bf16 ulp";
        Assert.Fail($"{what}: {failures} of {actual.Length} elements are not {rule}{(shape is null ? "" : $" (shape [{string.Join(", ", shape)}])")}\n  first {Math.Min(failures, Listed)}:{listed}");
    }

    /// <summary>
    /// The bf16 kernel of an op is the fp32 kernel's arithmetic with one rounding at the store: its output must be the
    /// fp32 path's output (the same backend, the same bf16-valued inputs held as Float32) rounded by the host. Exact on the
    /// emulator (one host compilation of one template); on a GPU the two instantiations are compiled separately, and an
    /// FMA contracted differently moves the fp32 value by an ulp, which can move its rounding by one bf16 ulp.
    /// </summary>
    public static void RoundedFromFp32(Tensor actual, Tensor fp32Result, BackendCase backendCase, string what, int[]? shape = null) =>
        Within(actual.ToBFloat16s(), Round(fp32Result.ToFloats()), backendCase.Name == "Cuda" ? 1 : 0,
            $"{what}: the bf16 kernel against the fp32 kernel's result rounded once", shape);

    /// <summary>Units in the last place between two non-NaN bf16 values (order-preserving integer map of the bits).</summary>
    private static int Distance(BFloat16 a, BFloat16 b) => Math.Abs(Ordinal(a) - Ordinal(b));

    private static int Ordinal(BFloat16 v) => (v.Bits & 0x8000) != 0 ? -(v.Bits & 0x7FFF) : v.Bits;

    private static string Index(int flat, int[]? shape)
    {
        if (shape is null || shape.Length < 2) return $"[{flat}]";
        var index = new int[shape.Length];
        int rest = flat;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            index[d] = rest % shape[d];
            rest /= shape[d];
        }
        return $"[{flat}] = [{string.Join(", ", index)}]";
    }
}
