using OR1.Native;

namespace OR1.Tests.Ops;

/// <summary>The kernel backends' log-prob tiling (<see cref="LogProbTiling.Plan"/>), a pure function of the shape and the free memory.</summary>
public sealed class LogProbTilingTests
{
    private const long GiB = 1L << 30;
    private const int Vocab = 151936, Hidden = 1536;

    [Test]
    public void AnH100SizedDeviceGetsFullTilesFarBelowTheUnfusedLogits()
    {
        var plan = LogProbTiling.Plan(16384, Vocab, Hidden, DType.BFloat16, freeBytes: 70 * GiB, maxTileFloats: 32L << 20, maxChunk: 8192);
        Assert.That(plan.VocabChunk, Is.EqualTo(8192));
        Assert.That(plan.RowBlock, Is.EqualTo(4096), "32 M floats of tile / 8192 columns");
        // 128 MiB of tile + the 96 MiB fp32 d-hidden accumulator of bf16 storage, against 9.3 GiB of logits.
        Assert.That(plan.ScratchBytes, Is.EqualTo((128L << 20) + 16384L * Hidden * 4));
        Assert.That(plan.ScratchBytes * 8, Is.LessThanOrEqualTo(plan.UnfusedLogitBytes));
    }

    [Test]
    public void LittleFreeMemoryShrinksTheRowBlockToItsShare()
    {
        var plan = LogProbTiling.Plan(16384, Vocab, Hidden, DType.Float32, freeBytes: 2 * GiB, maxTileFloats: 32L << 20, maxChunk: 8192);
        long tileBytes = (long)plan.RowBlock * plan.VocabChunk * 4;
        Assert.That(tileBytes, Is.LessThanOrEqualTo(2 * GiB / LogProbTiling.FreeMemoryShare));
        Assert.That(plan.RowBlock, Is.EqualTo(2 * GiB / LogProbTiling.FreeMemoryShare / 4 / 8192));
        Assert.That(plan.ScratchBytes, Is.EqualTo(tileBytes + 4L * 16384 * 4), "fp32 storage: the tile and the row statistics");
    }

    [Test]
    public void NoFreeMemoryStillTakesOneRowAndSmallProblemsOneTile()
    {
        var starved = LogProbTiling.Plan(100, Vocab, Hidden, DType.Float32, freeBytes: 0, maxTileFloats: 32L << 20, maxChunk: 8192);
        Assert.That(starved.RowBlock, Is.EqualTo(1));
        var small = LogProbTiling.Plan(3, 11, 5, DType.Float32, freeBytes: 70 * GiB, maxTileFloats: 32L << 20, maxChunk: 8192);
        Assert.That((small.RowBlock, small.VocabChunk), Is.EqualTo((3, 11)));
        var empty = LogProbTiling.Plan(0, 11, 5, DType.Float32, freeBytes: 70 * GiB, maxTileFloats: 32L << 20, maxChunk: 8192);
        Assert.That(empty.RowBlock, Is.EqualTo(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => LogProbTiling.Plan(3, 0, 5, DType.Float32, 70 * GiB, 32L << 20, 8192));
    }
}
