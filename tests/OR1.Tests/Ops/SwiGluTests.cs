using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class SwiGluTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>
    /// Sizes on and off the 4-float pack; offsets put gate, dOutput and the outputs (and up, dUp) off the 16-byte grid,
    /// by the same amount (a scalar head, then packs) or by different amounts (the scalar path).
    /// </summary>
    [TestCase(1, 1)]
    [TestCase(3, 7)]
    [TestCase(33, 704)]
    [TestCase(129, 1001)]
    [TestCase(17, 80, 1, 1)]
    [TestCase(129, 67, 2, 0)]
    [TestCase(1, 1536, 3, 3)]
    public void ForwardAndBackwardMatchReference(int rows, int width, int offset = 0, int upOffset = 0)
    {
        var f32 = DType.Float32;
        var g = TestData.Uniform(rows * width, 1, -6, 6);
        var u = TestData.Uniform(rows * width, 2, -3, 3);
        var dy = TestData.Uniform(rows * width, 3);
        var gt = ViewAt(offset, f32, g, rows, width);
        var ut = ViewAt(upOffset, f32, u, rows, width);
        var y = PoisonedViewAt(offset, f32, rows, width);
        Backend.SwiGluForward(gt, ut, y);
        TensorAssert.Close(y.ToFloats(), SwiGluReference.Forward(TestData.ToDouble(g), TestData.ToDouble(u)), Tol(1e-6), Tol(1e-5), "silu(g) * u", [rows, width]);

        var dg = PoisonedViewAt(offset, f32, rows, width);
        var du = PoisonedViewAt(upOffset, f32, rows, width);
        Backend.SwiGluBackward(ViewAt(offset, f32, dy, rows, width), gt, ut, dg, du);
        var (refDg, refDu) = SwiGluReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(g), TestData.ToDouble(u));
        TensorAssert.Close(dg.ToFloats(), refDg, Tol(1e-6), Tol(1e-5), "dGate", [rows, width]);
        TensorAssert.Close(du.ToFloats(), refDu, Tol(1e-6), Tol(1e-5), "dUp", [rows, width]);
    }

    [Test]
    public void BackwardMatchesFiniteDifferencesOfForward()
    {
        const int rows = 4, width = 19;
        var g = TestData.Uniform(rows * width, 4, -4, 4);
        var u = TestData.Uniform(rows * width, 5);
        var projection = TestData.Uniform(rows * width, 6);
        var dg = Zeros(rows, width);
        var du = Zeros(rows, width);
        Backend.SwiGluBackward(Floats(projection, rows, width), Floats(g, rows, width), Floats(u, rows, width), dg, du);
        double Objective(float[] gs, float[] us)
        {
            var y = Zeros(rows, width);
            Backend.SwiGluForward(Floats(gs, rows, width), Floats(us, rows, width), y);
            return FloatGradientCheck.Project(y.ToFloats(), projection);
        }
        FloatGradientCheck.Directional(gs => Objective(gs, u), g, dg.ToFloats(), "SwiGLU dGate");
        FloatGradientCheck.Directional(us => Objective(g, us), u, du.ToFloats(), "SwiGLU dUp");
    }
}
