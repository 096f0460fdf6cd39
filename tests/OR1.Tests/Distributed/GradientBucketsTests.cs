using OR1.Native.Distributed;

namespace OR1.Tests.Distributed;

/// <summary>
/// How the flat gradient is cut for its sum (<see cref="GradientBuckets.Plan"/>): the buckets cover it exactly, from its
/// end to its start, none longer than asked; sharded, each lies in one rank's slice and names that rank.
/// </summary>
public sealed class GradientBucketsTests
{
    [TestCase(1000, 1, false, 64)]
    [TestCase(1000, 1, false, 1000)]
    [TestCase(1000, 1, false, 4096)]
    [TestCase(1024, 2, true, 64)]
    [TestCase(1152, 3, true, 100)]
    [TestCase(1152, 3, true, 384)]
    [TestCase(1152, 3, false, 100)]
    [TestCase(0, 2, true, 64)]
    public void TheBucketsCoverTheBufferFromItsEnd(long length, int world, bool sharded, int bucket)
    {
        var plan = GradientBuckets.Plan(length, world, sharded, bucket);
        long end = length;
        foreach (var b in plan)
        {
            Assert.That(b.End, Is.EqualTo(end), $"{b}: follows the previous bucket downwards");
            Assert.That(b.Length, Is.InRange(1, bucket), $"{b}: at most {bucket} elements");
            if (sharded)
            {
                long slice = length / world;
                Assert.That(b.Owner, Is.EqualTo((int)(b.Start / slice)), $"{b}: owned by the rank whose slice holds it");
                Assert.That(b.End, Is.LessThanOrEqualTo(slice * (b.Owner + 1)), $"{b}: inside its owner's slice");
            }
            else Assert.That(b.Owner, Is.EqualTo(-1), $"{b}: all-reduced");
            end = b.Start;
        }
        Assert.That(end, Is.Zero, "the plan reaches the buffer's start");
        // As few buckets as the cut allows: one per bucket size in each slice, rounded up.
        long pieces = sharded ? world : 1, perPiece = (length / pieces + bucket - 1) / bucket;
        Assert.That(plan, Has.Length.EqualTo(pieces * perPiece));
    }

    [Test]
    public void BadArgumentsAreRefused()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => GradientBuckets.Plan(-1, 1, false, 64))!.ParamName, Is.EqualTo("flatLength"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => GradientBuckets.Plan(64, 0, false, 64))!.ParamName, Is.EqualTo("worldSize"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => GradientBuckets.Plan(64, 1, false, 0))!.ParamName, Is.EqualTo("bucketElements"));
        var e = Assert.Throws<ArgumentException>(() => GradientBuckets.Plan(100, 3, true, 64));
        Assert.That(e!.Message, Does.Contain("100").And.Contain("3 equal slices"));
    }
}
