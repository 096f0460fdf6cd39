using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// RMSNorm with bf16 storage (x, weight, y, dy, dx in bf16; 1/rms and dWeight in fp32) against the double reference on
/// the bf16-rounded inputs. Tolerances: the sums run in fp32, so the error is the final rounding of each output to
/// bf16 (at most half an ulp, relative 2^-8: bf16 keeps 8 significant bits) plus fp32 noise: rtol 2^-8 + 1e-5 with a
/// small atol for the fp32 cancellation in dx. Truncating instead of rounding (up to 2^-7) fails these bounds.
/// 1/rms and the fp32 dWeight keep fp32-like tolerances relative to the bf16-rounded dy it sums.
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class RmsNormBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    const double RoundingRtol = 1.0 / 256 + 1e-5;

    /// <summary>Shapes and offsets as the fp32 suite's (RmsNormTests): widths on and off the 8-element pack, views off the 16-byte grid.</summary>
    [TestCase(1, 1)]
    [TestCase(3, 7)]
    [TestCase(17, 1000)]
    [TestCase(64, 1536)]
    [TestCase(1, 64, 1, 1)]
    [TestCase(17, 80)]
    [TestCase(129, 66)]
    [TestCase(17, 67, 5, 0)]
    [TestCase(17, 22, 1, 1)]
    [TestCase(129, 1536, 3, 3)]
    public void ForwardAndBackwardMatchReference(int rows, int width, int offset = 0, int weightOffset = 0)
    {
        const float eps = 1e-6f;
        var b16 = DType.BFloat16;
        var x = Bf16.Round(TestData.Normal(rows * width, rows + width));
        var w = Bf16.Round(TestData.Uniform(width, 2, 0.5f, 1.5f));
        var dy = Bf16.Round(TestData.Uniform(rows * width, 3));
        var xt = ViewAt(offset, b16, x, rows, width);
        var wt = ViewAt(weightOffset, b16, w, width);
        var y = PoisonedViewAt(offset, b16, rows, width);
        var invRms = Poisoned(rows);
        Backend.RmsNormForward(xt, wt, eps, y, invRms);
        var (refY, refInv) = RmsNormReference.Forward(TestData.ToDouble(x), TestData.ToDouble(w), rows, width, eps);
        TensorAssert.Close(y.ToFloatsWidened(), refY, 1e-6, RoundingRtol, "bf16 output", [rows, width]);
        TensorAssert.Close(invRms.ToFloats(), refInv, 1e-5, 1e-5, "invRms (fp32)");

        var dx = PoisonedViewAt(offset, b16, rows, width);
        var dwInit = TestData.Uniform(width, 4);
        var dw = ViewAt(weightOffset, DType.Float32, dwInit, width);
        Backend.RmsNormBackward(ViewAt(offset, b16, dy, rows, width), xt, wt, invRms, dx, dw);
        var refDw = TestData.ToDouble(dwInit);
        var refDx = RmsNormReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(x), TestData.ToDouble(w), refInv, rows, width, refDw);
        TensorAssert.Close(dx.ToFloatsWidened(), refDx, 1e-5, RoundingRtol, "bf16 dx", [rows, width]);
        TensorAssert.Close(dw.ToFloats(), refDw, 1e-3, 1e-3, "dWeight (fp32, accumulated)");
    }

    [Test]
    public void MixedStorageIsRefusedNamingTheArgument()
    {
        var x = Own(Backend.BFloat16s(TestData.Normal(12, 1), 3, 4));
        var w = Floats(TestData.Uniform(4, 2), 4);
        Assert.That(() => Backend.RmsNormForward(x, w, 1e-6f, Own(Backend.PoisonedBFloat16(3, 4)), Zeros(3)),
            Throws.ArgumentException.With.Message.Contains("RmsNormForward").And.Message.Contains("'weight'").And.Message.Contains("expected BFloat16"));
    }
}

/// <summary>The fp32 backends refuse bf16 storage with a message that says so, before any kernel runs.</summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.Fp32Only))]
public sealed class Bf16RefusedTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    [Test]
    public void BFloat16StorageIsAClearError()
    {
        Assert.That(Backend.StorageTypes, Is.EqualTo(new[] { OR1.Native.DType.Float32 }));
        var x = Own(Backend.Allocate(OR1.Native.DType.BFloat16, new OR1.Native.TensorShape(3, 4)));
        Assert.That(() => Backend.RmsNormForward(x, Zeros(4), 1e-6f, Zeros(3, 4), Zeros(3)),
            Throws.ArgumentException.With.Message.Contains("RmsNormForward: argument 'x' has dtype BFloat16")
                .And.Message.Contains("computes and stores in fp32"));
        Assert.That(() => Backend.Fill(x, 1f), Throws.ArgumentException.With.Message.Contains("Fill"));
    }
}
