using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Support;

namespace OR1.Tests.Cpu;

/// <summary>
/// <see cref="IBackend.FreezeWeights"/> on the Cpu backend: products by a frozen (packed once) weight give the bits of
/// products by the same weight unfrozen, at the shapes a decode step and a training step use (few and many rows, k
/// across the GEMM's k blocks, ragged n, threaded and not); the scope ends cleanly and other operands are untouched.
/// </summary>
public sealed class FrozenWeightsTests
{
    [TestCase(1, 8193, 256)]
    [TestCase(16, 704, 256)]
    [TestCase(64, 256, 704)]
    [TestCase(37, 1000, 2100)]
    [TestCase(300, 33, 17)]
    public void ProductsByAFrozenWeightKeepTheirBits(int m, int n, int k)
    {
        using var cpu = new CpuBackend();
        using var a = cpu.Floats(TestData.Normal(m * k, 1), m, k);
        using var w = cpu.Floats(TestData.Normal(n * k, 2), n, k);
        using var other = cpu.Floats(TestData.Normal(n * k, 3), n, k);
        using var c = cpu.Zeros(m, n);
        cpu.MatMul(a, false, w, true, c);
        var plain = c.ToFloats();
        cpu.MatMul(a, false, other, true, c);
        var otherPlain = c.ToFloats();
        using (cpu.FreezeWeights([w]))
        {
            cpu.Fill(c, float.NaN);
            cpu.MatMul(a, false, w, true, c);
            Assert.That(c.ToFloats(), Is.EqualTo(plain), "frozen: the same bits");
            cpu.MatMul(a, false, other, true, c);
            Assert.That(c.ToFloats(), Is.EqualTo(otherPlain), "a weight not frozen is multiplied as always");
            cpu.Fill(c, 1f);
            cpu.MatMul(a, false, w, true, c, alpha: 0.5f, beta: 1f);
            var accumulated = c.ToFloats();
            for (int i = 0; i < accumulated.Length; i++)
                Assert.That(accumulated[i], Is.EqualTo(1f + 0.5f * plain[i]).Within(1e-4f * (1 + Math.Abs(plain[i]))), "alpha and beta apply");
        }
        cpu.MatMul(a, false, w, true, c);
        Assert.That(c.ToFloats(), Is.EqualTo(plain), "after the scope: unfrozen again");
    }

    [Test]
    public void AWeightIsFrozenOnceAndOnlyWithinTheBudget()
    {
        using var cpu = new CpuBackend();
        using var w = cpu.Floats(TestData.Normal(64 * 32, 4), 64, 32);
        using var big = cpu.Floats(TestData.Normal(512 * 32, 5), 512, 32);
        using var a = cpu.Floats(TestData.Normal(3 * 32, 6), 3, 32);
        using var c = cpu.Zeros(3, 512);
        cpu.MatMul(a, false, big, true, c);
        var plain = c.ToFloats();
        // A budget that holds the small weight only: the big one is multiplied as always, with the same bits.
        using (cpu.FreezeWeights([w, big, w], maxBytes: 64 * 32 * sizeof(float)))
        {
            cpu.MatMul(a, false, big, true, c);
            Assert.That(c.ToFloats(), Is.EqualTo(plain));
        }
    }
}
