using OR1.Native;

namespace OR1.Tests.Ops;

/// <summary>
/// The flop counts the benchmarks report, checked against brute-force counts of the multiply-adds a
/// plain implementation does, and against FlashAttention's published convention.
/// </summary>
public class KernelCostTests
{
    /// <summary>Multiply-adds of naive attention: per sequence, head and query row, one q·k and one p·v of D each per visible key.</summary>
    private static long BruteForceAttentionMacs(int[] lengths, AttentionHeads heads, bool causal)
    {
        long macs = 0;
        foreach (int s in lengths)
            for (int h = 0; h < heads.NumHeads; h++)
                for (int i = 0; i < s; i++)
                    for (int j = 0; j < (causal ? i + 1 : s); j++)
                        macs += 2L * heads.HeadDim;
        return macs;
    }

    [TestCase(new[] { 7 }, 2, 1, 8)]
    [TestCase(new[] { 3, 5, 16 }, 4, 2, 17)]
    [TestCase(new[] { 1 }, 1, 1, 1)]
    public void NonCausalForwardIsTwoFlopsPerMultiplyAdd(int[] lengths, int numHeads, int numKvHeads, int headDim)
    {
        var heads = new AttentionHeads(numHeads, numKvHeads, headDim);
        Assert.That(KernelCost.AttentionForwardFlops(lengths, heads, causal: false),
            Is.EqualTo(2.0 * BruteForceAttentionMacs(lengths, heads, causal: false)));
    }

    [TestCase(new[] { 7 }, 2, 1, 8)]
    [TestCase(new[] { 64, 33 }, 4, 2, 16)]
    public void CausalForwardIsHalfTheFullSquareAsFlashAttentionCounts(int[] lengths, int numHeads, int numKvHeads, int headDim)
    {
        var heads = new AttentionHeads(numHeads, numKvHeads, headDim);
        double counted = KernelCost.AttentionForwardFlops(lengths, heads);
        double exact = 2.0 * BruteForceAttentionMacs(lengths, heads, causal: true);
        // FlashAttention halves S^2; the exact triangle has S(S+1)/2 keys, so the convention is below it by S/2 per sequence.
        double diagonal = lengths.Sum(s => 4.0 * s / 2 * numHeads * headDim);
        Assert.That(counted, Is.EqualTo(KernelCost.AttentionForwardFlops(lengths, heads, causal: false) / 2));
        Assert.That(counted, Is.EqualTo(exact - diagonal).Within(1e-9).Percent);
    }

    [Test]
    public void PublishedExampleAndBackwardRatio()
    {
        // FlashAttention's benchmark: batch 4 of 4096 tokens, 32 heads of 128, causal: 4 * 4 * 4096^2 * 32 * 128 / 2.
        var heads = new AttentionHeads(32, 32, 128);
        int[] lengths = [4096, 4096, 4096, 4096];
        Assert.That(KernelCost.AttentionForwardFlops(lengths, heads), Is.EqualTo(4.0 * 4 * 4096.0 * 4096 * 32 * 128 / 2));
        Assert.That(KernelCost.AttentionBackwardFlops(lengths, heads), Is.EqualTo(2.5 * KernelCost.AttentionForwardFlops(lengths, heads)));
    }

    [Test]
    public void DecodeCountsEveryCachedKeyOnce()
    {
        var heads = new AttentionHeads(4, 2, 16);
        int[] cacheLengths = [5, 9];
        Assert.That(KernelCost.AttentionDecodeFlops(cacheLengths, heads), Is.EqualTo(4.0 * 14 * 4 * 16));
    }

    [Test]
    public void GemmAndLogProbCounts()
    {
        Assert.That(KernelCost.MatMulFlops(3, 5, 7), Is.EqualTo(210));
        // Int overflow guard: 8192 x 18944 x 3584 does not fit an int.
        Assert.That(KernelCost.MatMulFlops(8192, 18944, 3584), Is.EqualTo(2.0 * 8192 * 18944 * 3584));
        Assert.That(KernelCost.LogProbForwardFlops(4, 896, 151936), Is.EqualTo(2.0 * 4 * 896 * 151936));
        Assert.That(KernelCost.LogProbBackwardFlops(4, 896, 151936), Is.EqualTo(3 * KernelCost.LogProbForwardFlops(4, 896, 151936)));
    }

    [Test]
    public void NegativeLengthIsRejectedWithTheArgumentNamed()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => KernelCost.AttentionForwardFlops([4, -1], new AttentionHeads(1, 1, 1)));
        Assert.That(e!.ParamName, Is.EqualTo("sequenceLengths"));
    }
}
