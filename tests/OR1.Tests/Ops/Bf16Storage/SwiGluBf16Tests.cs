using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// SwiGLU forward and backward on bf16 storage (kernels/swiglu.cu) against the double reference on the bf16-rounded
/// inputs (gate in [-8, 8] plus saturating values, up in [-2, 2], dOutput in [-1, 1]). Tolerances: the fp32 arithmetic
/// (expf, a division, a few products) errs by a few fp32 ulps of terms of magnitude &lt;= 16, and the
/// 1 + g (1 - s) of dGate adds an ulp of |g| &lt;= 8 times |dy u s| &lt;= 2: under 1e-5 absolute in all; the store rounds to
/// bf16, at most 2^-8 of the value. So atol 2e-5 (1e-5 with the rounding's share of it and a 2x margin), rtol 2^-8.
/// And, as for every fp32-computed bf16 op: the output is the fp32 kernel's output rounded once (bit for bit on the
/// emulator).
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class SwiGluBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private const double Atol = 2e-5;
    private static readonly double Rtol = Math.Pow(2, -8);

    /// <summary>Sizes on and off the 8-element pack; offsets as the fp32 suite's (SwiGluTests).</summary>
    [TestCase(1, 1)]
    [TestCase(3, 37)]
    [TestCase(64, 4864)]
    [TestCase(17, 80, 1, 1)]
    [TestCase(129, 67, 3, 0)]
    [TestCase(1, 1536, 5, 5)]
    public void ForwardAndBackwardMatchReference(int rows, int width, int offset = 0, int upOffset = 0)
    {
        int n = rows * width;
        var gate = TestData.Uniform(n, 1 + n, -8, 8);
        float[] saturating = [0f, -30f, 30f, 88f, -88f, -1.28f, 1e-3f];
        for (int i = 0; i < Math.Min(n, saturating.Length); i++) gate[n - 1 - i] = saturating[i];
        gate = Bf16.Round(gate);
        var up = Bf16.Round(TestData.Uniform(n, 2 + n, -2, 2));
        var dy = Bf16.Round(TestData.Uniform(n, 3 + n));
        int[] shape = [rows, width];
        var b16 = DType.BFloat16;
        var g = ViewAt(offset, b16, gate, rows, width);
        var u = ViewAt(upOffset, b16, up, rows, width);

        var y = PoisonedViewAt(offset, b16, rows, width);
        Backend.SwiGluForward(g, u, y);
        TensorAssert.Close(y.ToFloatsWidened(), SwiGluReference.Forward(TestData.ToDouble(gate), TestData.ToDouble(up)), Tol(Atol), Rtol,
            "bf16 silu(gate) * up", shape);

        var dGate = PoisonedViewAt(offset, b16, rows, width);
        var dUp = PoisonedViewAt(upOffset, b16, rows, width);
        Backend.SwiGluBackward(ViewAt(offset, b16, dy, rows, width), g, u, dGate, dUp);
        var (refDGate, refDUp) = SwiGluReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(gate), TestData.ToDouble(up));
        TensorAssert.Close(dGate.ToFloatsWidened(), refDGate, Tol(Atol), Rtol, "bf16 dGate", shape);
        TensorAssert.Close(dUp.ToFloatsWidened(), refDUp, Tol(Atol), Rtol, "bf16 dUp", shape);

        // The same inputs through the fp32 kernels: the bf16 outputs are their results rounded once.
        var g32 = Floats(gate, rows, width);
        var u32 = Floats(up, rows, width);
        var y32 = Poisoned(rows, width);
        Backend.SwiGluForward(g32, u32, y32);
        Bf16Bits.RoundedFromFp32(y, y32, Case, "silu(gate) * up", shape);
        var dGate32 = Poisoned(rows, width);
        var dUp32 = Poisoned(rows, width);
        Backend.SwiGluBackward(Floats(dy, rows, width), g32, u32, dGate32, dUp32);
        Bf16Bits.RoundedFromFp32(dGate, dGate32, Case, "dGate", shape);
        Bf16Bits.RoundedFromFp32(dUp, dUp32, Case, "dUp", shape);
    }

    [Test]
    public void MixedStorageIsRefusedNamingTheArgument() =>
        Assert.That(() => Backend.SwiGluBackward(Own(Backend.PoisonedBFloat16(2, 3)), Own(Backend.PoisonedBFloat16(2, 3)), Own(Backend.PoisonedBFloat16(2, 3)),
                Zeros(2, 3), Own(Backend.PoisonedBFloat16(2, 3))),
            Throws.ArgumentException.With.Message.Contains("SwiGluBackward").And.Message.Contains("'dGate'").And.Message.Contains("expected BFloat16"));
}
