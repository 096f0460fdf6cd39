using OR1.Grpo.Data;

namespace OR1.Tests.Data;

public class SplitMix64Tests
{
    [Test]
    public void MatchesTheReferenceSequence()
    {
        // The published SplitMix64 outputs for seed 1234567.
        var rng = new SplitMix64(1234567);
        var outputs = Enumerable.Range(0, 5).Select(_ => rng.Next()).ToArray();
        Assert.That(outputs, Is.EqualTo(new ulong[]
        {
            6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821,
        }));
    }

    [Test]
    public void NextBelowStaysInRangeAndHitsEveryValue()
    {
        var rng = new SplitMix64(3);
        var seen = new HashSet<ulong>();
        for (int i = 0; i < 2000; i++)
        {
            ulong v = rng.NextBelow(7);
            Assert.That(v, Is.LessThan(7UL));
            seen.Add(v);
        }
        Assert.That(seen, Has.Count.EqualTo(7));
    }

    [Test]
    public void NextBelowZeroIsRejected()
        => Assert.Throws<ArgumentOutOfRangeException>(() => new SplitMix64(1).NextBelow(0));

    [Test]
    public void ShuffleIsAPermutation()
    {
        var items = Enumerable.Range(0, 100).ToArray();
        new SplitMix64(9).Shuffle(items);
        Assert.That(items, Is.EquivalentTo(Enumerable.Range(0, 100)));
        Assert.That(items, Is.Not.EqualTo(Enumerable.Range(0, 100)));
    }
}
