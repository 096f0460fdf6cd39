using System.Runtime.Intrinsics.X86;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Cpu;

/// <summary>
/// The Cpu backend picks its GEMM micro-kernel by the machine's ISA (AVX-512 12x32, AVX2/FMA 6x16, portable 4x8),
/// and attention multiplies through the same kernels, so a CI machine with AVX-512 would never run the others.
/// These tests force each fallback (with small cache blocks, so edge tiles and several KC panels occur) and check
/// MatMul and attention against the double references.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class CpuMicroKernelTests
{
    private CpuBackend _cpu = null!;

    public static IEnumerable<TestCaseData> Kernels()
    {
        yield return new TestCaseData("Portable").SetArgDisplayNames("Portable 4x8");
        yield return new TestCaseData("Fma256").SetArgDisplayNames("FMA 6x16");
    }

    [SetUp]
    public void Open() => _cpu = new CpuBackend(threads: 2);

    [TearDown]
    public void Restore()
    {
        CpuGemm.UseKernel(CpuGemm.DetectKernel());
        _cpu.Dispose();
    }

    // The kernel enum is internal, so test cases name it.
    private static void Use(string name)
    {
        var kernel = Enum.Parse<CpuGemm.Kernel>(name);
        if (kernel == CpuGemm.Kernel.Fma256 && !(Fma.IsSupported && Avx.IsSupported))
            Assert.Ignore("this machine has no AVX2/FMA, so the 6x16 kernel cannot run here");
        CpuGemm.UseKernel(kernel, mc: 24, kc: 40, nc: 48);
    }

    [TestCaseSource(nameof(Kernels))]
    public void MatMulMatchesTheReferenceInEveryTransposeAndEdgeShape(string kernel)
    {
        Use(kernel);
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 9, 5), (13, 33, 41), (50, 70, 90), (6, 16, 40), (25, 49, 81) })
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        {
            var a = TestData.Uniform(m * k, m + k);
            var b = TestData.Uniform(k * n, n + k + 1);
            var c0 = TestData.Uniform(m * n, m + n + 2);
            using var at = _cpu.Floats(a, ta ? k : m, ta ? m : k);
            using var bt = _cpu.Floats(b, tb ? n : k, tb ? k : n);
            using var ct = _cpu.Floats(c0, m, n);
            _cpu.MatMul(at, ta, bt, tb, ct, 0.75f, 1f);
            var expected = TestData.ToDouble(c0);
            MatMulReference.Forward(TestData.ToDouble(a), ta, TestData.ToDouble(b), tb, expected, m, n, k, 0.75, 1);
            TensorAssert.Close(ct.ToFloats(), expected, 1e-5, 1e-5, $"{kernel} C = 0.75 op(A) op(B) + C, m={m} n={n} k={k} ta={ta} tb={tb}");
        }
    }

    [TestCaseSource(nameof(Kernels))]
    public void AttentionForwardBackwardAndDecodeMatchTheReference(string kernel)
    {
        Use(kernel);
        int[] lengths = [1, 19, 40];
        int[] offsets = [0, 1, 20, 60];
        int n = 60, heads = 4, kvHeads = 2, dim = 24;
        int qWidth = heads * dim, kvWidth = kvHeads * dim;
        double scale = 1 / Math.Sqrt(dim);
        var q = TestData.Normal(n * qWidth, 1);
        var k = TestData.Normal(n * kvWidth, 2);
        var v = TestData.Normal(n * kvWidth, 3);
        var dy = TestData.Normal(n * qWidth, 4);
        var shape = new AttentionHeads(heads, kvHeads, dim);
        using var seqs = Segments.FromLengths(_cpu, lengths);
        using var qt = _cpu.Floats(q, n, qWidth);
        using var kt = _cpu.Floats(k, n, kvWidth);
        using var vt = _cpu.Floats(v, n, kvWidth);
        using var y = _cpu.Zeros(n, qWidth);
        using var lse = _cpu.Zeros(n, heads);
        _cpu.AttentionForward(qt, kt, vt, seqs, shape, (float)scale, y, lse);
        var (refY, refLse) = AttentionReference.Forward(TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v), offsets, heads, kvHeads, dim, scale);
        TensorAssert.Close(y.ToFloats(), refY, 2e-5, 2e-5, $"{kernel} attention output");
        TensorAssert.Close(lse.ToFloats(), refLse, 2e-5, 2e-5, $"{kernel} attention log-sum-exp");

        using var dyt = _cpu.Floats(dy, n, qWidth);
        using var dq = _cpu.Zeros(n, qWidth);
        using var dk = _cpu.Zeros(n, kvWidth);
        using var dv = _cpu.Zeros(n, kvWidth);
        _cpu.AttentionBackward(dyt, qt, kt, vt, y, lse, seqs, shape, (float)scale, dq, dk, dv);
        var (refDq, refDk, refDv) = AttentionReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v),
            offsets, heads, kvHeads, dim, scale);
        TensorAssert.Close(dq.ToFloats(), refDq, 1e-4, 1e-4, $"{kernel} dq");
        TensorAssert.Close(dk.ToFloats(), refDk, 1e-4, 1e-4, $"{kernel} dk");
        TensorAssert.Close(dv.ToFloats(), refDv, 1e-4, 1e-4, $"{kernel} dv");

        // Decode: two cache slots of 40 rows holding the packed keys/values of the last two sequences.
        int maxLength = 40;
        var keyCache = new float[2 * maxLength * kvWidth];
        var valueCache = new float[2 * maxLength * kvWidth];
        Array.Copy(k, 1 * kvWidth, keyCache, 0, 19 * kvWidth);
        Array.Copy(v, 1 * kvWidth, valueCache, 0, 19 * kvWidth);
        Array.Copy(k, 20 * kvWidth, keyCache, maxLength * kvWidth, 40 * kvWidth);
        Array.Copy(v, 20 * kvWidth, valueCache, maxLength * kvWidth, 40 * kvWidth);
        var dq1 = new float[2 * qWidth];
        Array.Copy(q, 19 * qWidth, dq1, 0, qWidth);
        Array.Copy(q, 59 * qWidth, dq1, qWidth, qWidth);
        using var qd = _cpu.Floats(dq1, 2, qWidth);
        using var kc = _cpu.KeyCache(keyCache, 2, maxLength, kvWidth);
        using var vc = _cpu.Floats(valueCache, 2, maxLength, kvWidth);
        using var slots = _cpu.Ints([0, 1], 2);
        using var lens = _cpu.Ints([19, 40], 2);
        using var yd = _cpu.Zeros(2, qWidth);
        _cpu.AttentionDecode(qd, kc, vc, slots, lens, shape, (float)scale, yd);
        var refD = AttentionReference.Decode(TestData.ToDouble(dq1), TestData.ToDouble(keyCache), TestData.ToDouble(valueCache), [0, 1], [19, 40],
            maxLength, heads, kvHeads, dim, scale);
        TensorAssert.Close(yd.ToFloats(), refD, 2e-5, 2e-5, $"{kernel} decode");
    }
}
