using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class GrpoAdvantagesTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private float[] Advantages(float[] rewards, int[] groupSizes, float eps = 1e-6f)
    {
        var r = Floats(rewards, rewards.Length);
        var a = Poisoned(rewards.Length);
        Backend.GrpoAdvantages(r, Lengths(groupSizes), eps, a);
        return a.ToFloats();
    }

    [Test]
    public void MixedBinaryGroupMatchesHandComputation()
    {
        // mean 0.75; unbiased std = sqrt((3 * 0.25^2 + 0.75^2) / 3) = 0.5
        var a = Advantages([1, 0, 1, 1], [4]);
        double s = 0.5 + 1e-6;
        Assert.That(a, Is.EqualTo(new[] { 0.25 / s, -0.75 / s, 0.25 / s, 0.25 / s }).Within(1e-6));
    }

    [Test]
    public void SingletonGroupKeepsItsRewardAsAdvantage()
    {
        // verl's rule: a group of one has mean 0 and std 1, so A = r / (1 + eps)
        var a = Advantages([1, 0, 0.5f], [1, 1, 1]);
        Assert.That(a, Is.EqualTo(new[] { 1 / (1 + 1e-6), 0, 0.5 / (1 + 1e-6) }).Within(1e-7));
    }

    [Test]
    public void AllEqualGroupsGiveZeroAdvantage()
    {
        var a = Advantages([1, 1, 1, 0, 0], [3, 2]);
        Assert.That(a, Is.All.EqualTo(0f));
    }

    [Test]
    public void TiesShareTheSameAdvantage()
    {
        // rewards 2, 2, 0, 0: mean 1, unbiased std = sqrt(4/3)
        var a = Advantages([2, 2, 0, 0], [4]);
        double s = Math.Sqrt(4.0 / 3.0) + 1e-6;
        Assert.That(a, Is.EqualTo(new[] { 1 / s, 1 / s, -1 / s, -1 / s }).Within(1e-6));
    }

    [Test]
    public void GroupsAreIndependent()
    {
        var a = Advantages([1, 0, 5, 5, 5, 3], [2, 3, 1]);
        double s2 = Math.Sqrt(0.5) + 1e-6;
        Assert.That(a, Is.EqualTo(new[] { 0.5 / s2, -0.5 / s2, 0, 0, 0, 3 / (1 + 1e-6) }).Within(1e-6));
    }

    [Test]
    public void GroupsThatDoNotCoverTheRewardsAreRejected()
    {
        var r = Floats([1, 0, 1], 3);
        var a = Zeros(3);
        var e = Assert.Throws<ArgumentException>(() => Backend.GrpoAdvantages(r, Lengths(2, 2), 1e-6f, a))!;
        Assert.That(e.Message, Does.Contain("GrpoAdvantages").And.Contain("groups").And.Contain("4").And.Contain("3"));
    }
}

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class GrpoReferenceComparisonTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    [TestCase(1, 1)]
    [TestCase(16, 8)]
    [TestCase(37, 5)]
    public void RandomGroupsMatchReference(int groups, int maxGroupSize)
    {
        var sizes = TestData.SegmentLengths(groups, 1, maxGroupSize, groups);
        int r = sizes.Sum();
        var rewards = TestData.Ints(r, 2, 5).Select(x => (float)x).ToArray();
        var a = Poisoned(r);
        Backend.GrpoAdvantages(Floats(rewards, r), Lengths(sizes), 1e-6f, a);
        TensorAssert.Close(a.ToFloats(), GrpoReference.Advantages(TestData.ToDouble(rewards), TestData.OffsetsFromLengths(sizes), 1e-6), 1e-6, 1e-5, "advantages");
    }

    [Test]
    public void BroadcastPutsEachResponseAdvantageOnAllItsTokens()
    {
        int[] lengths = [3, 0, 1, 5];
        var values = new float[] { 0.5f, 9f, -1f, 2f };
        var output = Poisoned(9);
        Backend.BroadcastSegments(Floats(values, 4), Lengths(lengths), output);
        TensorAssert.Close(output.ToFloats(), GrpoReference.BroadcastSegments(TestData.ToDouble(values), TestData.OffsetsFromLengths(lengths)), 0, 0, "broadcast");
    }
}
