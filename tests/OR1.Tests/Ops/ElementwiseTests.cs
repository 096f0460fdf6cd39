using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class ElementwiseTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>Lengths around the 4-float pack; offsets put the tensors off the 16-byte grid, together or by different amounts.</summary>
    [TestCase(1)]
    [TestCase(37)]
    [TestCase(100_003)]
    [TestCase(37, 1, 1)]
    [TestCase(1003, 3, 3)]
    [TestCase(1003, 2, 0)]
    public void FillCopyAddScale(int n, int offset = 0, int otherOffset = 0)
    {
        var f32 = DType.Float32;
        var a = TestData.Uniform(n, 1);
        var b = TestData.Uniform(n, 2);
        var x = ViewAt(offset, f32, a, n);
        var y = ViewAt(otherOffset, f32, b, n);
        var sum = PoisonedViewAt(offset, f32, n);
        Backend.Add(x, y, sum);
        Backend.Scale(sum, -2f);
        var copy = PoisonedViewAt(otherOffset, f32, n);
        Backend.Copy(sum, copy);
        var expected = a.Zip(b, (p, q) => -2.0 * ((double)p + q)).ToArray();
        TensorAssert.Close(copy.ToFloats(), expected, 1e-6, 1e-6, "copy of -2 (a + b)");
        Backend.Fill(copy, 3.5f);
        Assert.That(copy.ToFloats(), Is.All.EqualTo(3.5f));
    }

    [Test]
    public void AddMayWorkInPlace()
    {
        var x = Floats([1, 2, 3], 3);
        Backend.Add(x, x, x);
        Assert.That(x.ToFloats(), Is.EqualTo(new[] { 2f, 4f, 6f }));
    }

    /// <summary>
    /// Widths on the 4-float pack (64, 80, 1536) and off it (5, 22, 37, 67); offsets put x and dOutput (and the bias and
    /// dBias) off the 16-byte grid. Many rows split dBias's column sums over several row blocks.
    /// </summary>
    [TestCase(3, 5)]
    [TestCase(2000, 37)]
    [TestCase(1, 64)]
    [TestCase(129, 80)]
    [TestCase(17, 67, 1, 1)]
    [TestCase(129, 22, 2, 0)]
    [TestCase(17, 1536, 3, 3)]
    public void BiasForwardAndBackward(int rows, int width, int offset = 0, int biasOffset = 0)
    {
        var f32 = DType.Float32;
        var data = TestData.Uniform(rows * width, 3);
        var bias = TestData.Uniform(width, 4);
        var x = ViewAt(offset, f32, data, rows, width);
        Backend.AddBias(x, ViewAt(biasOffset, f32, bias, width));
        var expected = new double[rows * width];
        for (int n = 0; n < rows; n++)
            for (int d = 0; d < width; d++) expected[n * width + d] = (double)data[n * width + d] + bias[d];
        TensorAssert.Close(x.ToFloats(), expected, 1e-6, 1e-6, "x + bias", [rows, width]);

        var dBias = ViewAt(biasOffset, f32, Enumerable.Repeat(1f, width).ToArray(), width);
        Backend.BiasBackward(ViewAt(offset, f32, data, rows, width), dBias);
        var sums = new double[width];
        for (int d = 0; d < width; d++)
        {
            sums[d] = 1;
            for (int n = 0; n < rows; n++) sums[d] += data[n * width + d];
        }
        TensorAssert.Close(dBias.ToFloats(), sums, 1e-4, 1e-5, "dBias (accumulated onto 1)");
    }

    /// <summary>dBias's column sums add in an order fixed by the shape (kernels/column_sums.cuh): two runs give the same bits.</summary>
    [TestCase(2000, 80)]
    [TestCase(300, 37)]
    public void BiasGradientIsBitIdenticalFromRunToRun(int rows, int width)
    {
        var dOutput = Floats(TestData.Normal(rows * width, 9), rows, width);
        float[] BiasGradient()
        {
            var dBias = Zeros(width);
            Backend.BiasBackward(dOutput, dBias);
            return dBias.ToFloats();
        }
        var first = BiasGradient();
        var second = BiasGradient();
        Assert.That(second.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(first.Select(BitConverter.SingleToInt32Bits)), "dBias bits of two runs");
    }

    [Test]
    public void GatherAndScatterRows()
    {
        var source = Floats([0, 1, 10, 11, 20, 21, 30, 31], 4, 2);
        var gathered = Poisoned(3, 2);
        Backend.GatherRows(source, Ints([3, 0, 3], 3), gathered);
        Assert.That(gathered.ToFloats(), Is.EqualTo(new float[] { 30, 31, 0, 1, 30, 31 }));

        var cache = Zeros(5, 2);
        Backend.ScatterRows(Floats([7, 8, 9, 10], 2, 2), Ints([4, 1], 2), cache);
        Assert.That(cache.ToFloats(), Is.EqualTo(new float[] { 0, 0, 9, 10, 0, 0, 0, 0, 7, 8 }));
    }

    [Test]
    public void GatherIndexOutOfRangeIsAnArgumentError() =>
        // Kernel backends raise a device-held bad index at the next wait (see DeviceIndexCheckTests).
        Assert.That(() => { Backend.GatherRows(Zeros(2, 2), Ints([0, 2], 2), Zeros(2, 2)); Backend.Synchronize(); },
            Throws.ArgumentException.With.Message.Contains("GatherRows").And.Message.Contains("position 1"));

    [Test]
    public void GlobalNormOverSeveralTensors()
    {
        var a = TestData.Uniform(70_001, 5);
        var b = TestData.Uniform(13, 6);
        float norm = Backend.GlobalNorm([Floats(a, a.Length), Floats(b, 13)]);
        double expected = GlobalNormReference(a, b);
        Assert.That(norm, Is.EqualTo(expected).Within(1e-5 * expected));
    }

    private static double GlobalNormReference(float[] a, float[] b) =>
        OR1.Tests.Reference.GlobalNormReference.Norm(TestData.ToDouble(a), TestData.ToDouble(b));
}
