using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// RoPE forward and backward on bf16 storage (kernels/rope.cu), head dims 16, 64 and 128, positions up to 4095, against
/// the double reference on the bf16-rounded inputs. Tolerances: the kernel computes in fp32 exactly as the fp32 path
/// does, whose error against the double reference is at most ~5.2e-4 for |x| &lt;= 1 at positions below 4096 (the
/// angle pos * inv_freq is formed in fp32, as HF does: half an ulp of a 4095 rad angle, 1.2e-4, plus inv_freq's half
/// ulp times 4095, 2.4e-4, times |(x1, x2)| &lt;= sqrt 2; the fp32 suite allows 6e-4); the store then rounds to bf16,
/// at most 2^-8 of the value. So |y - exact| &lt;= 6e-4 (1 + 2^-8) + 2^-8 |exact|: atol 7e-4, rtol 2^-8. Tighter,
/// and independent of angles: the bf16 output must be the fp32 kernel's output rounded once (bit for bit on the
/// emulator), which a truncating store or a double rounding fails at about half the elements.
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class RopeBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private const double Atol = 7e-4;
    private static readonly double Rtol = Math.Pow(2, -8);

    /// <summary>Head dims whose half is a multiple of the 8-element pack (16, 64, 80, 128) and one that is not (12); an offset
    /// puts input and output off the 16-byte grid (the scalar path).</summary>
    [TestCase(7, 3, 16, 10000f)]
    [TestCase(33, 2, 64, 1_000_000f)]
    [TestCase(20, 4, 128, 10000f)]
    [TestCase(5, 14, 64, 1_000_000f)]
    [TestCase(17, 2, 80, 1_000_000f)]
    [TestCase(17, 3, 12, 10000f)]
    [TestCase(17, 3, 64, 10000f, 3)]
    public void ForwardAndBackwardMatchReference(int rows, int heads, int headDim, float theta, int offset = 0)
    {
        int width = heads * headDim;
        var x = Bf16.Round(TestData.Uniform(rows * width, rows + headDim));
        var dy = Bf16.Round(TestData.Uniform(rows * width, rows + headDim + 1));
        // Packed sequences restart at 0; long ones reach a few thousand (4095 is the largest angle error below 4096).
        var positions = Enumerable.Range(0, rows).Select(i => (i % 4) switch { 0 => 0, 1 => i, 2 => 1000 + 37 * i, _ => 4095 - i }).ToArray();
        var pos = Ints(positions, rows);
        int[] shape = [rows, heads, headDim];

        var y = PoisonedViewAt(offset, DType.BFloat16, rows, width);
        Backend.RopeForward(ViewAt(offset, DType.BFloat16, x, rows, width), pos, heads, headDim, theta, y);
        var expected = RopeReference.Forward(TestData.ToDouble(x), positions, heads, headDim, theta);
        TensorAssert.Close(y.ToFloatsWidened(), expected, Tol(Atol), Rtol, "bf16 rope(x)", shape);
        var y32 = Poisoned(rows, width);
        Backend.RopeForward(Floats(x, rows, width), pos, heads, headDim, theta, y32);
        Bf16Bits.RoundedFromFp32(y, y32, Case, "rope(x)", shape);

        var dx = PoisonedViewAt(offset, DType.BFloat16, rows, width);
        Backend.RopeBackward(ViewAt(offset, DType.BFloat16, dy, rows, width), pos, heads, headDim, theta, dx);
        var expectedDx = RopeReference.Backward(TestData.ToDouble(dy), positions, heads, headDim, theta);
        TensorAssert.Close(dx.ToFloatsWidened(), expectedDx, Tol(Atol), Rtol, "bf16 rope backward", shape);
        var dx32 = Poisoned(rows, width);
        Backend.RopeBackward(Floats(dy, rows, width), pos, heads, headDim, theta, dx32);
        Bf16Bits.RoundedFromFp32(dx, dx32, Case, "rope backward", shape);
    }

    [Test]
    public void InPlaceEqualsOutOfPlace()
    {
        const int rows = 9, heads = 2, headDim = 64;
        var x = Bf16.Round(TestData.Normal(rows * heads * headDim, 31));
        var pos = Ints([0, 1, 2, 3, 2047, 2048, 4000, 7, 3071], rows);
        var outOfPlace = Own(Backend.PoisonedBFloat16(rows, heads * headDim));
        Backend.RopeForward(Own(Backend.BFloat16s(x, rows, heads * headDim)), pos, heads, headDim, 10000f, outOfPlace);
        var t = Own(Backend.BFloat16s(x, rows, heads * headDim));
        Backend.RopeForward(t, pos, heads, headDim, 10000f, t);
        Bf16Bits.Equal(t.ToBFloat16s(), outOfPlace.ToBFloat16s(), "rope in place");
        Backend.RopeBackward(t, pos, heads, headDim, 10000f, t);
        // Two bf16 roundings (after the rotation, after the inverse): back within 2 * 2^-8 of |(x1, x2)| of x.
        TensorAssert.Close(t.ToFloatsWidened(), TestData.ToDouble(x), 1e-6 + 2 * Math.Pow(2, -8) * x.Max(Math.Abs) * Math.Sqrt(2), 0, "inverse(rope(x)) in bf16");
    }

    [Test]
    public void OutputMustShareTheInputDtype() =>
        Assert.That(() => Backend.RopeForward(Own(Backend.PoisonedBFloat16(2, 8)), Ints([0, 1], 2), 1, 8, 10000f, Zeros(2, 8)),
            Throws.ArgumentException.With.Message.Contains("RopeForward").And.Message.Contains("'output'").And.Message.Contains("expected BFloat16"));
}
