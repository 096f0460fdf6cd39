using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class RmsNormTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>
    /// Widths that are multiples of the kernels' 16-byte pack (64, 80, 1536) and widths that are not (7, 22, 67, 129,
    /// 1000); offsets (elements into a buffer) put the activations (x, y, dy, dx) and the weight (and dWeight) off the
    /// 16-byte grid, by the same amount (a scalar head, then packs) or by different amounts (the scalar path).
    /// 129 and 300 rows split dWeight's column sums over several row blocks.
    /// </summary>
    [TestCase(1, 1)]
    [TestCase(3, 7)]
    [TestCase(5, 64)]
    [TestCase(300, 129)]
    [TestCase(17, 1000)]
    [TestCase(1, 64, 1, 1)]
    [TestCase(17, 80)]
    [TestCase(17, 80, 2, 2)]
    [TestCase(129, 67)]
    [TestCase(129, 22, 1, 0)]
    [TestCase(17, 1536, 3, 1)]
    public void ForwardAndBackwardMatchReference(int rows, int width, int offset = 0, int weightOffset = 0)
    {
        const float eps = 1e-6f;
        var f32 = DType.Float32;
        var x = TestData.Normal(rows * width, rows + width);
        var w = TestData.Uniform(width, 2, 0.5f, 1.5f);
        var dy = TestData.Uniform(rows * width, 3);
        var y = PoisonedViewAt(offset, f32, rows, width);
        var invRms = Poisoned(rows);
        var xt = ViewAt(offset, f32, x, rows, width);
        var wt = ViewAt(weightOffset, f32, w, width);
        Backend.RmsNormForward(xt, wt, eps, y, invRms);
        var (refY, refInv) = RmsNormReference.Forward(TestData.ToDouble(x), TestData.ToDouble(w), rows, width, eps);
        TensorAssert.Close(y.ToFloats(), refY, Tol(1e-6), Tol(1e-5), "output", [rows, width]);
        TensorAssert.Close(invRms.ToFloats(), refInv, Tol(1e-6), Tol(1e-5), "invRms");

        var dx = PoisonedViewAt(offset, f32, rows, width);
        var dwInit = TestData.Uniform(width, 4);
        var dw = ViewAt(weightOffset, f32, dwInit, width);
        Backend.RmsNormBackward(ViewAt(offset, f32, dy, rows, width), xt, wt, invRms, dx, dw);
        var refDw = TestData.ToDouble(dwInit);
        var refDx = RmsNormReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(x), TestData.ToDouble(w), refInv, rows, width, refDw);
        TensorAssert.Close(dx.ToFloats(), refDx, Tol(1e-5), Tol(1e-4), "dx", [rows, width]);
        TensorAssert.Close(dw.ToFloats(), refDw, Tol(1e-4), Tol(1e-4), "dWeight (accumulated)");
    }

    /// <summary>
    /// dWeight's column sums add in an order fixed by the shape (kernels/column_sums.cuh), so two backward passes over
    /// the same inputs give the same bits, on the 16-byte path (80 columns) and the scalar one (67).
    /// </summary>
    [TestCase(300, 80)]
    [TestCase(129, 67)]
    public void WeightGradientIsBitIdenticalFromRunToRun(int rows, int width)
    {
        var x = Floats(TestData.Normal(rows * width, 5), rows, width);
        var w = Floats(TestData.Uniform(width, 6, 0.5f, 1.5f), width);
        var dy = Floats(TestData.Normal(rows * width, 7), rows, width);
        var inv = Zeros(rows);
        Backend.RmsNormForward(x, w, 1e-6f, Zeros(rows, width), inv);
        float[] WeightGradient()
        {
            var dw = Zeros(width);
            Backend.RmsNormBackward(dy, x, w, inv, Zeros(rows, width), dw);
            return dw.ToFloats();
        }
        var first = WeightGradient();
        var second = WeightGradient();
        Assert.That(second.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(first.Select(BitConverter.SingleToInt32Bits)), "dWeight bits of two runs");
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
