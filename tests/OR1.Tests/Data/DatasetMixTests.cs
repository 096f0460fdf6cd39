using OR1.Grpo.Data;
using static OR1.Tests.Data.DataTestExamples;

namespace OR1.Tests.Data;

public class DatasetMixTests
{
    private static List<RlExample> ThreeCodeFourMath() => [Code(0), Math(0), Code(1), Math(1), Math(2), Code(2), Math(3)];

    [Test]
    public void CodeAppearsTwiceAndMathOnce()
    {
        var mixed = DatasetMix.Mix(ThreeCodeFourMath(), seed: 1);

        Assert.That(mixed, Has.Count.EqualTo(10));
        var counts = mixed.GroupBy(e => e.Id).ToDictionary(g => g.Key, g => g.Count());
        Assert.That(counts, Is.EquivalentTo(new Dictionary<string, int>
        {
            ["c/0"] = 2, ["c/1"] = 2, ["c/2"] = 2,
            ["m/0"] = 1, ["m/1"] = 1, ["m/2"] = 1, ["m/3"] = 1,
        }));
    }

    [Test]
    public void SameSeedSameOrderOtherSeedOtherOrder()
    {
        var a = DatasetMix.Mix(ThreeCodeFourMath(), seed: 5).Select(e => e.Id).ToList();
        var b = DatasetMix.Mix(ThreeCodeFourMath(), seed: 5).Select(e => e.Id).ToList();
        var c = DatasetMix.Mix(ThreeCodeFourMath(), seed: 6).Select(e => e.Id).ToList();

        Assert.That(b, Is.EqualTo(a));
        Assert.That(c, Is.Not.EqualTo(a));
    }

    [Test]
    public void OrderIsTheSeededFisherYatesOfTheRepeatedList()
    {
        // Math-only input, so the pre-shuffle list is the input itself. Expected: SplitMix64(7) Fisher-Yates of 0..9,
        // computed outside this code base.
        var mixed = DatasetMix.Mix(Maths(10), seed: 7);
        Assert.That(mixed.Select(e => e.Index), Is.EqualTo(new long?[] { 8, 1, 5, 9, 0, 4, 3, 2, 6, 7 }));
    }

    [Test]
    public void CopiesAreConfigurable()
    {
        var mixed = DatasetMix.Mix([Code(0), Math(0)], seed: 0, codeCopies: 3, mathCopies: 0);
        Assert.That(mixed.Select(e => e.Id), Is.EqualTo(new[] { "c/0", "c/0", "c/0" }));
    }
}
