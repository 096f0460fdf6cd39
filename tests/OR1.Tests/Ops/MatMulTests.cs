using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class MatMulTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private static readonly object[] Shapes =
    [
        new object[] { 1, 1, 1 }, new object[] { 7, 5, 3 }, new object[] { 33, 17, 65 }, new object[] { 6, 16, 1 },
        new object[] { 1, 300, 64 }, new object[] { 129, 97, 255 }, new object[] { 64, 64, 0 },
    ];

    [TestCaseSource(nameof(Shapes))]
    public void MatchesReferenceForEveryTransposeAndBeta(int m, int n, int k)
    {
        SkipIfLarge((long)m * n * k > 100_000, $"{m}x{n}x{k} in 12 variants");
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        foreach (float beta in new[] { 0f, 1f, 0.5f })
        {
            var a = TestData.Uniform(m * k, 1 + m + k);
            var b = TestData.Uniform(k * n, 2 + n + k);
            var c0 = TestData.Uniform(m * n, 3 + m + n);
            var c = beta == 0f ? Poisoned(m, n) : Floats(c0, m, n);
            Backend.MatMul(Floats(a, ta ? k : m, ta ? m : k), ta, Floats(b, tb ? n : k, tb ? k : n), tb, c, alpha: 0.75f, beta: beta);
            var expected = TestData.ToDouble(c0);
            MatMulReference.Forward(TestData.ToDouble(a), ta, TestData.ToDouble(b), tb, expected, m, n, k, 0.75, beta);
            TensorAssert.Close(c.ToFloats(), expected, Tol(1e-5), Tol(1e-4), $"C ({m}x{n}x{k}, ta={ta}, tb={tb}, beta={beta})", [m, n]);
        }
    }

    [Test]
    public void StridedBatchesAreIndependent()
    {
        const int batch = 3, m = 5, n = 9, k = 11;
        var a = TestData.Uniform(batch * m * k, 4);
        var b = TestData.Uniform(batch * n * k, 5);
        var c = Poisoned(batch, m, n);
        Backend.MatMul(Floats(a, batch, m, k), false, Floats(b, batch, n, k), true, c);
        var expected = new double[batch * m * n];
        MatMulReference.ForwardBatched(TestData.ToDouble(a), false, TestData.ToDouble(b), true, expected, batch, m, n, k);
        TensorAssert.Close(c.ToFloats(), expected, Tol(1e-5), Tol(1e-4), "batched C", [batch, m, n]);
    }

    [Test]
    public void LargeProblemUsesEveryThreadAndStaysExact()
    {
        SkipIfLarge(true, "a 300x270x513 GEMM");
        const int m = 300, n = 270, k = 513;
        var a = TestData.Uniform(m * k, 6);
        var b = TestData.Uniform(k * n, 7);
        var c = Poisoned(m, n);
        Backend.MatMul(Floats(a, m, k), false, Floats(b, k, n), false, c);
        var expected = new double[m * n];
        MatMulReference.Forward(TestData.ToDouble(a), false, TestData.ToDouble(b), false, expected, m, n, k);
        TensorAssert.Close(c.ToFloats(), expected, Tol(1e-4), Tol(1e-4), "C 300x270x513", [m, n]);
        var again = Poisoned(m, n);
        Backend.MatMul(Floats(a, m, k), false, Floats(b, k, n), false, again);
        Assert.That(again.ToFloats(), Is.EqualTo(c.ToFloats()), "GEMM must be deterministic run to run");
    }
}
