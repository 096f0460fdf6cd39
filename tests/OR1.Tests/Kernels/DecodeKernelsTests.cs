using OR1.Native;
using OR1.Native.Kernels;

namespace OR1.Tests.Kernels;

/// <summary>
/// The launch plan of decode (kernels/attention_decode.cu) as <see cref="DecodeKernels"/> makes it: the split count fills
/// the device at batch 1 as at batch 64, chunks never drop below the minimum, every split holds positions, and the kernel
/// matches the head group and head dim. 1,056 blocks is the Cuda runtime's device fill on an H100 (132 SMs x 8).
/// </summary>
public sealed class DecodeKernelsTests
{
    private const int H100Blocks = 132 * 8;

    [TestCase(1, 32768, 12, 2, 128, 128, 256, TestName = "batch 1 x 32K, Qwen2.5-1.5B heads: 128 splits of 256")]
    [TestCase(64, 4096, 28, 4, 128, 4, 1024, TestName = "batch 64 x 4K, Qwen2.5-7B heads: 4 splits of 1024")]
    [TestCase(64, 4096, 12, 2, 128, 8, 512, TestName = "batch 64 x 4K, Qwen2.5-1.5B heads: 8 splits of 512")]
    [TestCase(64, 1024, 12, 2, 128, 4, 256, TestName = "batch 64 x 1K: as many splits as 256-position chunks allow")]
    [TestCase(256, 4096, 28, 4, 128, 1, 4096, TestName = "batch 256 fills the device without a split")]
    [TestCase(1, 255, 14, 2, 64, 1, 255, TestName = "a cache shorter than one minimum chunk is one split")]
    public void SplitCountFillsTheDevice(int batch, int maxLength, int heads, int kvHeads, int headDim, int splits, int chunk)
    {
        var plan = DecodeKernels.For(new AttentionHeads(heads, kvHeads, headDim), batch, maxLength, H100Blocks, cachesAligned: true);
        Assert.Multiple(() =>
        {
            Assert.That(plan.Splits, Is.EqualTo(splits), "splits");
            Assert.That(plan.Chunk, Is.EqualTo(chunk), "chunk");
        });
    }

    [Test]
    public void EverySplitHoldsPositionsAndChunksKeepTheirMinimumAndAlignment()
    {
        foreach (int deviceBlocks in (ReadOnlySpan<int>)[4, 216, H100Blocks])
            foreach (int batch in (ReadOnlySpan<int>)[1, 3, 33, 64, 500])
                foreach (int maxLength in (ReadOnlySpan<int>)[1, 17, 256, 257, 1000, 4097, 32768, 131072])
                {
                    var plan = DecodeKernels.For(new AttentionHeads(28, 4, 128), batch, maxLength, deviceBlocks, cachesAligned: true);
                    string what = $"{deviceBlocks} device blocks, batch {batch}, {maxLength} positions: {plan.Splits} x {plan.Chunk}";
                    Assert.That((long)plan.Splits * plan.Chunk, Is.GreaterThanOrEqualTo(maxLength), what);
                    Assert.That((long)(plan.Splits - 1) * plan.Chunk, Is.LessThan(maxLength), what + " (an empty split)");
                    if (plan.Splits == 1) continue;
                    Assert.That(plan.Chunk, Is.GreaterThanOrEqualTo(DecodeKernels.MinChunk), what);
                    Assert.That(plan.Chunk % DecodeKernels.ChunkAlign, Is.Zero, what);
                }
    }

    [TestCase(1, 1, 128, "attention_decode_split_g1_bf16", 1)]
    [TestCase(4, 2, 64, "attention_decode_split_g2_bf16", 1)]
    [TestCase(12, 2, 128, "attention_decode_split_g8_bf16", 1)]
    [TestCase(28, 4, 80, "attention_decode_split_g8_bf16", 1)]
    [TestCase(32, 2, 128, "attention_decode_split_g8_bf16", 2)]
    [TestCase(10, 2, 102, "attention_decode_split_scalar_g8_bf16", 1)]
    public void TheKernelFitsTheHeadGroupAndHeadDim(int heads, int kvHeads, int headDim, string kernel, int headChunks)
    {
        var plan = DecodeKernels.For(new AttentionHeads(heads, kvHeads, headDim), 8, 4096, H100Blocks, cachesAligned: true);
        Assert.That(plan.Split(DType.BFloat16), Is.EqualTo(kernel));
        Assert.That(plan.HeadChunks, Is.EqualTo(headChunks));
        Assert.That(plan.SharedBytes(headDim), Is.LessThanOrEqualTo(48 * 1024), "shared memory within the 48 KB that needs no opt-in");
    }

    [Test]
    public void CachesOffA16ByteBoundaryTakeTheScalarPath() =>
        Assert.That(DecodeKernels.For(new AttentionHeads(12, 2, 128), 8, 4096, H100Blocks, cachesAligned: false).Split(DType.Float32),
            Is.EqualTo("attention_decode_split_scalar_g8_f32"));

    /// <summary>
    /// A GPU launches at most 65,535 blocks along y and z. A step's rows (its requests and a chunked prefill's positions)
    /// may be more, so they are the grid's x; the splits are its z and stay within the limit whatever the device's size
    /// and the cache's length (a billion positions here, which alone would ask for millions of splits).
    /// </summary>
    [TestCase(70_000, 4096, H100Blocks, TestName = "70,000 rows: the rows go on x")]
    [TestCase(1, 1 << 30, int.MaxValue, TestName = "a 2^30-position cache on an unbounded device: splits capped at 65,535")]
    public void SplitGridStaysWithinTheGridLimits(int batch, int maxLength, int deviceBlocks)
    {
        var heads = new AttentionHeads(12, 2, 128);
        var plan = DecodeKernels.For(heads, batch, maxLength, deviceBlocks, cachesAligned: true);
        var grid = plan.SplitGrid(heads, batch);
        Assert.Multiple(() =>
        {
            Assert.That(grid.X, Is.EqualTo((uint)batch), "rows on x");
            Assert.That(grid.Y, Is.LessThanOrEqualTo((uint)KernelLaunchers.MaxGridYZ), "y");
            Assert.That(grid.Z, Is.EqualTo((uint)plan.Splits).And.LessThanOrEqualTo((uint)KernelLaunchers.MaxGridYZ), "splits on z");
            Assert.That((long)plan.Splits * plan.Chunk, Is.GreaterThanOrEqualTo(maxLength), "the splits cover the cache");
        });
    }
}
