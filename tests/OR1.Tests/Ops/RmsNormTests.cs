using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class RmsNormTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    [TestCase(1, 1)]
    [TestCase(3, 7)]
    [TestCase(5, 64)]
    [TestCase(300, 129)]
    [TestCase(17, 1000)]
    public void ForwardAndBackwardMatchReference(int rows, int width)
    {
        const float eps = 1e-6f;
        var x = TestData.Normal(rows * width, rows + width);
        var w = TestData.Uniform(width, 2, 0.5f, 1.5f);
        var dy = TestData.Uniform(rows * width, 3);
        var y = Poisoned(rows, width);
        var invRms = Poisoned(rows);
        var xt = Floats(x, rows, width);
        var wt = Floats(w, width);
        Backend.RmsNormForward(xt, wt, eps, y, invRms);
        var (refY, refInv) = RmsNormReference.Forward(TestData.ToDouble(x), TestData.ToDouble(w), rows, width, eps);
        TensorAssert.Close(y.ToFloats(), refY, Tol(1e-6), Tol(1e-5), "output", [rows, width]);
        TensorAssert.Close(invRms.ToFloats(), refInv, Tol(1e-6), Tol(1e-5), "invRms");

        var dx = Poisoned(rows, width);
        var dwInit = TestData.Uniform(width, 4);
        var dw = Floats(dwInit, width);
        Backend.RmsNormBackward(Floats(dy, rows, width), xt, wt, invRms, dx, dw);
        var refDw = TestData.ToDouble(dwInit);
        var refDx = RmsNormReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(x), TestData.ToDouble(w), refInv, rows, width, refDw);
        TensorAssert.Close(dx.ToFloats(), refDx, Tol(1e-5), Tol(1e-4), "dx", [rows, width]);
        TensorAssert.Close(dw.ToFloats(), refDw, Tol(1e-4), Tol(1e-4), "dWeight (accumulated)");
    }

    [Test]
    public void BackwardMatchesFiniteDifferencesOfForward()
    {
        const int rows = 4, width = 37;
        var x = TestData.Normal(rows * width, 11);
        var w = TestData.Uniform(width, 12, 0.5f, 1.5f);
        var projection = TestData.Uniform(rows * width, 13);
        double Objective(float[] xs, float[] ws)
        {
            var y = Zeros(rows, width);
            Backend.RmsNormForward(Floats(xs, rows, width), Floats(ws, width), 1e-5f, y, Zeros(rows));
            return FloatGradientCheck.Project(y.ToFloats(), projection);
        }
        var inv = Zeros(rows);
        Backend.RmsNormForward(Floats(x, rows, width), Floats(w, width), 1e-5f, Zeros(rows, width), inv);
        var dx = Zeros(rows, width);
        var dw = Zeros(width);
        Backend.RmsNormBackward(Floats(projection, rows, width), Floats(x, rows, width), Floats(w, width), inv, dx, dw);
        FloatGradientCheck.Directional(xs => Objective(xs, w), x, dx.ToFloats(), "RMSNorm dx");
        FloatGradientCheck.Directional(ws => Objective(x, ws), w, dw.ToFloats(), "RMSNorm dWeight");
    }
}
