using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class AdamWReferenceTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>
    /// Sizes across the kernel's chunks and its 4-float packs; offsets put parameters and moments (and gradients) off the
    /// 16-byte grid, by the same amount (a scalar head, then packs) or by different amounts (the scalar path).
    /// </summary>
    [TestCase(0, 0)]
    [TestCase(1, 1)]
    [TestCase(3, 2)]
    public void SeveralStepsOverSeveralTensorsMatchReference(int offset, int gradientOffset)
    {
        int[] sizes = [1, 13, 70_001];
        var options = new AdamWOptions(1e-3, 0.9, 0.95, 1e-8, 0.1);
        var slots = new List<AdamWSlot>();
        var refState = new List<(double[] P, double[] M, double[] V, bool Decay)>();
        for (int i = 0; i < sizes.Length; i++)
        {
            var p = TestData.Uniform(sizes[i], 10 + i);
            bool decay = i != 1;
            var zeros = new float[sizes[i]];
            slots.Add(new AdamWSlot(ViewAt(offset, DType.Float32, p, sizes[i]), ViewAt(gradientOffset, DType.Float32, zeros, sizes[i]),
                ViewAt(offset, DType.Float32, zeros, sizes[i]), ViewAt(offset, DType.Float32, zeros, sizes[i]), decay));
            refState.Add((TestData.ToDouble(p), new double[sizes[i]], new double[sizes[i]], decay));
        }
        for (int step = 1; step <= 3; step++)
        {
            const float scale = 0.7f;
            for (int i = 0; i < sizes.Length; i++)
            {
                var g = TestData.Uniform(sizes[i], 100 * step + i);
                Backend.Upload<float>(g, slots[i].Gradient);
                var (p, m, v, decay) = refState[i];
                AdamWReference.Step(p, TestData.ToDouble(g), m, v, step, 1e-3, 0.9, 0.95, 1e-8, 0.1, decay, scale);
            }
            Backend.AdamWStep(slots, options, step, scale);
        }
        for (int i = 0; i < sizes.Length; i++)
        {
            TensorAssert.Close(slots[i].Parameter.ToFloats(), refState[i].P, 1e-6, 1e-5, $"parameter {i}");
            TensorAssert.Close(slots[i].FirstMoment.ToFloats(), refState[i].M, 1e-7, 1e-5, $"first moment {i}");
            TensorAssert.Close(slots[i].SecondMoment.ToFloats(), refState[i].V, 1e-8, 1e-5, $"second moment {i}");
        }
    }
}
