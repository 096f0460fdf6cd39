using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class RopeTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>
    /// Head dims whose half is a multiple of the 4-float pack (16, 64, 80, 128: the kernels rotate packs of pairs) and
    /// others (2, 6, 18: one pair at a time); an offset puts input and output off the 16-byte grid (the scalar path).
    /// </summary>
    [TestCase(1, 1, 2, 10000f)]
    [TestCase(5, 3, 6, 10000f)]
    [TestCase(9, 7, 64, 1_000_000f)]
    [TestCase(40, 2, 128, 10000f)]
    [TestCase(3, 4, 18, 500f)]
    [TestCase(1, 2, 16, 10000f)]
    [TestCase(17, 2, 80, 1_000_000f)]
    [TestCase(17, 3, 64, 10000f, 1)]
    public void ForwardAndBackwardMatchReference(int rows, int heads, int headDim, float theta, int offset = 0)
    {
        int width = heads * headDim;
        var f32 = DType.Float32;
        var x = TestData.Uniform(rows * width, rows + headDim);
        // Positions as packing produces them (restart per sequence) plus a large one to exercise the table.
        var positions = Enumerable.Range(0, rows).Select(i => i % 5 == 4 ? 4000 + i : i % 5).ToArray();
        var y = PoisonedViewAt(offset, f32, rows, width);
        var pos = Ints(positions, rows);
        Backend.RopeForward(ViewAt(offset, f32, x, rows, width), pos, heads, headDim, theta, y);
        var expected = RopeReference.Forward(TestData.ToDouble(x), positions, heads, headDim, theta);
        // HF computes angles in fp32 and so do we: at position ~4000 an angle of ~3000 rad has an fp32 ulp
        // of 2.4e-4, and inv_freq carries half an ulp of relative error, so angles (hence values, |x| <= 1)
        // may differ from the double reference by up to ~4e-4.
        TensorAssert.Close(y.ToFloats(), expected, Tol(6e-4), Tol(1e-5), "rope(x)", [rows, heads, headDim]);

        var dy = TestData.Uniform(rows * width, 5);
        var dx = PoisonedViewAt(offset, f32, rows, width);
        Backend.RopeBackward(ViewAt(offset, f32, dy, rows, width), pos, heads, headDim, theta, dx);
        var expectedDx = RopeReference.Backward(TestData.ToDouble(dy), positions, heads, headDim, theta);
        TensorAssert.Close(dx.ToFloats(), expectedDx, Tol(6e-4), Tol(1e-5), "rope backward", [rows, heads, headDim]);
    }

    [Test]
    public void InPlaceRotationThenInverseRestoresInput()
    {
        var x = TestData.Uniform(6 * 16, 9);
        var t = Floats(x, 6, 16);
        var pos = Ints([0, 1, 2, 3, 100, 7], 6);
        Backend.RopeForward(t, pos, 2, 8, 10000f, t);
        Assert.That(t.ToFloats(), Is.Not.EqualTo(x));
        Backend.RopeBackward(t, pos, 2, 8, 10000f, t);
        TensorAssert.Close(t.ToFloats(), x, 1e-6, 1e-5, "inverse(rope(x))");
    }

    [Test]
    public void BackwardMatchesFiniteDifferencesOfForward()
    {
        const int rows = 5, heads = 3, headDim = 10;
        int width = heads * headDim;
        var x = TestData.Uniform(rows * width, 21);
        var projection = TestData.Uniform(rows * width, 22);
        var pos = Ints([0, 1, 2, 0, 9], rows);
        var dx = Zeros(rows, width);
        Backend.RopeBackward(Floats(projection, rows, width), pos, heads, headDim, 10000f, dx);
        FloatGradientCheck.Directional(xs =>
        {
            var y = Zeros(rows, width);
            Backend.RopeForward(Floats(xs, rows, width), pos, heads, headDim, 10000f, y);
            return FloatGradientCheck.Project(y.ToFloats(), projection);
        }, x, dx.ToFloats(), "RoPE dx");
    }

    [Test]
    public void NegativePositionIsAnArgumentError() =>
        // Kernel backends raise a device-held bad position at the next wait (see DeviceIndexCheckTests).
        Assert.That(() => { Backend.RopeForward(Zeros(2, 4), Ints([0, -3], 2), 1, 4, 10000f, Zeros(2, 4)); Backend.Synchronize(); },
            Throws.ArgumentException.With.Message.Contains("RopeForward").And.Message.Contains("-3"));
}
