using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// GEMM with bf16 inputs (kernels/gemm.cu's gemm_bf16 and gemm_bf16_f32 on the emulator, cuBLAS on a GPU): into a bf16
/// C, and into an fp32 C accumulating with beta = 1 as parameter gradients do; every transpose combination, rank-3
/// batches, odd sizes and k = 0. Tolerances, from the data rather than guessed: a product of two bf16 values (8
/// significant bits each) is exact in fp32 (24 bits), so op(A) op(B) is a sum of k exact products in fp32, which errs by
/// at most gamma = (k + 3) * 2^-24 times S = |alpha| sum_p |a_ip b_pj| + |beta c_ij| in any summation order (k - 1
/// additions, the alpha scaling, the beta term and its addition). E = gamma * max S is the fp32 C's absolute tolerance
/// (rtol 0): a kernel rounding anything to bf16 on the way is off by ~2^-8 of the value, 100x more. A bf16 C is that
/// value rounded once more, at most 2^-8 of it: atol E (1 + 2^-8), rtol 2^-8. On the emulator, where the bf16
/// kernels share the fp32 kernel's summation order, the results are also compared bit for bit with the fp32 GEMM of the
/// widened inputs (rounded once for a bf16 C).
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class MatMulBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private static readonly double Rounding = Math.Pow(2, -8);

    private static readonly object[] Shapes =
    [
        new object[] { 1, 1, 1 }, new object[] { 7, 1, 33 }, new object[] { 1, 7, 129 }, new object[] { 33, 129, 7 },
        new object[] { 129, 33, 65 }, new object[] { 16, 32, 48 }, new object[] { 33, 7, 0 },
    ];

    [TestCaseSource(nameof(Shapes))]
    public void EveryTransposeIntoBf16AndIntoAccumulatingFp32(int m, int n, int k)
    {
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        {
            string what = $"{m}x{n}x{k}, ta={ta}, tb={tb}";
            var a = Bf16.Round(TestData.Uniform(m * k, 1 + m + k));
            var b = Bf16.Round(TestData.Uniform(k * n, 2 + n + k, -2, 2));
            var at = Own(Backend.BFloat16s(a, ta ? k : m, ta ? m : k));
            var bt = Own(Backend.BFloat16s(b, tb ? n : k, tb ? k : n));

            // bf16 C, beta = 0: old contents (NaN) ignored.
            var c = Own(Backend.PoisonedBFloat16(m, n));
            Backend.MatMul(at, ta, bt, tb, c, alpha: 0.75f);
            CheckBf16(c, a, ta, b, tb, null, 1, m, n, k, 0.75, 0, $"bf16 C ({what}, beta 0)");

            // bf16 C, beta = 0.5: the old bf16 C scaled and added in fp32 before the one rounding.
            var old = Bf16.Round(TestData.Uniform(m * n, 3 + m + n, -4, 4));
            var c2 = Own(Backend.BFloat16s(old, m, n));
            Backend.MatMul(at, ta, bt, tb, c2, alpha: -1.25f, beta: 0.5f);
            CheckBf16(c2, a, ta, b, tb, old, 1, m, n, k, -1.25, 0.5, $"bf16 C ({what}, beta 0.5)");

            // fp32 C accumulating (a parameter gradient): twice, as two micro-batches would.
            var grad = TestData.Uniform(m * n, 4 + m + n);
            var c3 = Floats(grad, m, n);
            Backend.MatMul(at, ta, bt, tb, c3, alpha: 0.75f, beta: 1f);
            var once = CheckFp32(c3, a, ta, b, tb, grad, 1, m, n, k, 0.75, $"fp32 C += A B ({what})");
            Backend.MatMul(at, ta, bt, tb, c3, alpha: 0.75f, beta: 1f);
            CheckFp32(c3, a, ta, b, tb, once, 1, m, n, k, 0.75, $"fp32 C += A B twice ({what})");

            if (Case.Name != "Cuda")
            {
                // The emulator's bf16 kernels are the fp32 kernel with other loads and stores: bit for bit.
                var af = Floats(a, ta ? k : m, ta ? m : k);
                var bf = Floats(b, tb ? n : k, tb ? k : n);
                var f = Poisoned(m, n);
                Backend.MatMul(af, ta, bf, tb, f, alpha: 0.75f);
                Bf16Bits.Equal(c.ToBFloat16s(), Bf16Bits.Round(f.ToFloats()), $"bf16 C against the fp32 GEMM rounded once ({what})", [m, n]);
                var f3 = Floats(grad, m, n);
                Backend.MatMul(af, ta, bf, tb, f3, alpha: 0.75f, beta: 1f);
                Backend.MatMul(af, ta, bf, tb, f3, alpha: 0.75f, beta: 1f);
                Assert.That(c3.ToFloats(), Is.EqualTo(f3.ToFloats()), $"fp32 C from bf16 inputs against the fp32 GEMM of the widened inputs ({what})");
            }
        }
    }

    [TestCase(false, false)]
    [TestCase(false, true)]
    [TestCase(true, false)]
    [TestCase(true, true)]
    public void StridedBatchesAreIndependent(bool ta, bool tb)
    {
        const int batch = 3, m = 7, n = 33, k = 17;
        var a = Bf16.Round(TestData.Uniform(batch * m * k, 5));
        var b = Bf16.Round(TestData.Uniform(batch * n * k, 6));
        // The batched reference takes each batch's a and b in their stored layout.
        var at = Own(Backend.BFloat16s(a, batch, ta ? k : m, ta ? m : k));
        var bt = Own(Backend.BFloat16s(b, batch, tb ? n : k, tb ? k : n));
        var c = Own(Backend.PoisonedBFloat16(batch, m, n));
        Backend.MatMul(at, ta, bt, tb, c);
        CheckBf16(c, a, ta, b, tb, null, batch, m, n, k, 1, 0, $"batched bf16 C (ta={ta}, tb={tb})");

        var grad = TestData.Uniform(batch * m * n, 7);
        var c32 = Floats(grad, batch, m, n);
        Backend.MatMul(at, ta, bt, tb, c32, alpha: 2f, beta: 1f);
        CheckFp32(c32, a, ta, b, tb, grad, batch, m, n, k, 2, $"batched fp32 C += 2 A B (ta={ta}, tb={tb})");
    }

    [Test]
    public void EmptyInnerDimensionGivesBetaTimesC()
    {
        // k = 0: C = beta * C; with beta = 0 even a NaN C becomes exact zeros.
        var a = Own(Backend.Allocate(DType.BFloat16, new TensorShape(5, 0)));
        var b = Own(Backend.Allocate(DType.BFloat16, new TensorShape(0, 3)));
        var c = Own(Backend.PoisonedBFloat16(5, 3));
        Backend.MatMul(a, false, b, false, c);
        Assert.That(c.ToFloatsWidened(), Is.All.EqualTo(0f));
        var grad = TestData.Uniform(15, 8);
        var c32 = Floats(grad, 5, 3);
        Backend.MatMul(a, false, b, false, c32, beta: 1f);
        Assert.That(c32.ToFloats(), Is.EqualTo(grad), "fp32 C += (empty product)");
    }

    [Test]
    public void MixedInputDtypesAreRefusedNamingTheArgument()
    {
        var f32 = Zeros(4, 4);
        var bf = Own(Backend.PoisonedBFloat16(4, 4));
        Assert.Multiple(() =>
        {
            Assert.That(() => Backend.MatMul(f32, false, bf, false, Zeros(4, 4)),
                Throws.ArgumentException.With.Message.Contains("MatMul").And.Message.Contains("'b'").And.Message.Contains("has dtype BFloat16, expected Float32"));
            Assert.That(() => Backend.MatMul(bf, false, f32, false, Zeros(4, 4)),
                Throws.ArgumentException.With.Message.Contains("MatMul").And.Message.Contains("'b'").And.Message.Contains("has dtype Float32, expected BFloat16"));
            // fp32 inputs never produce a bf16 C (only bf16 inputs may widen into fp32).
            Assert.That(() => Backend.MatMul(f32, false, Zeros(4, 4), false, Own(Backend.PoisonedBFloat16(4, 4))),
                Throws.ArgumentException.With.Message.Contains("MatMul").And.Message.Contains("'c'").And.Message.Contains("has dtype BFloat16"));
        });
    }

    private static void CheckBf16(Tensor c, float[] a, bool ta, float[] b, bool tb, float[]? old, int batch, int m, int n, int k,
        double alpha, double beta, string what)
    {
        var (expected, e) = Reference(a, ta, b, tb, old, batch, m, n, k, alpha, beta);
        TensorAssert.Close(c.ToFloatsWidened(), expected, e * (1 + Rounding), Rounding, $"{what}, E = {e:G3}", batch == 1 ? [m, n] : [batch, m, n]);
    }

    /// <summary>Checks an accumulated fp32 C and returns the reference, for a next accumulation.</summary>
    private static float[] CheckFp32(Tensor c, float[] a, bool ta, float[] b, bool tb, float[] old, int batch, int m, int n, int k,
        double alpha, string what)
    {
        var (expected, e) = Reference(a, ta, b, tb, old, batch, m, n, k, alpha, 1);
        var got = c.ToFloats();
        TensorAssert.Close(got, expected, e, 0, $"{what}, E = {e:G3}", batch == 1 ? [m, n] : [batch, m, n]);
        return got;
    }

    /// <summary>The exact C (in double: the inputs are bf16, the products exact) and E, the fp32 summation bound.</summary>
    private static (double[] C, double E) Reference(float[] a, bool ta, float[] b, bool tb, float[]? old, int batch, int m, int n, int k,
        double alpha, double beta)
    {
        var expected = old is null ? new double[batch * m * n] : TestData.ToDouble(old);
        MatMulReference.ForwardBatched(TestData.ToDouble(a), ta, TestData.ToDouble(b), tb, expected, batch, m, n, k, alpha, beta);
        var magnitude = old is null ? new double[batch * m * n] : old.Select(v => (double)Math.Abs(v)).ToArray();
        MatMulReference.ForwardBatched(a.Select(v => (double)Math.Abs(v)).ToArray(), ta, b.Select(v => (double)Math.Abs(v)).ToArray(), tb,
            magnitude, batch, m, n, k, Math.Abs(alpha), Math.Abs(beta));
        double e = (k + 3) * Math.Pow(2, -24) * (magnitude.Length == 0 ? 0 : magnitude.Max());
        return (expected, e);
    }
}
