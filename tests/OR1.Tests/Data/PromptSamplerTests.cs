using System.Text.Json;
using OR1.Grpo.Data;
using static OR1.Tests.Data.DataTestExamples;

namespace OR1.Tests.Data;

public class PromptSamplerTests
{
    private static List<long?> Indices(IEnumerable<RlExample> batch) => batch.Select(e => e.Index).ToList();

    private static List<List<long?>> Draw(PromptSampler sampler, int batches)
        => Enumerable.Range(0, batches).Select(_ => Indices(sampler.NextBatch())).ToList();

    [Test]
    public void EpochOrderIsThePinnedSeededShuffle()
    {
        // SplitMix64(42 ^ Mix(e + 1)) Fisher-Yates of 0..9, computed outside this code base: the order is the
        // same on every machine and .NET version.
        var sampler = new PromptSampler(Maths(10), batchSize: 5, seed: 42);

        Assert.That(Indices(sampler.EpochOrder(0)), Is.EqualTo(new long?[] { 6, 9, 1, 5, 0, 8, 4, 2, 3, 7 }));
        Assert.That(Indices(sampler.EpochOrder(1)), Is.EqualTo(new long?[] { 9, 4, 1, 3, 0, 8, 6, 2, 7, 5 }));
        Assert.That(Draw(sampler, 3), Is.EqualTo(new List<List<long?>>
        {
            new() { 6, 9, 1, 5, 0 }, new() { 8, 4, 2, 3, 7 }, new() { 9, 4, 1, 3, 0 },
        }));
    }

    [Test]
    public void SameSeedSameBatchesOtherSeedOtherBatches()
    {
        var a = Draw(new PromptSampler(Maths(20), 4, seed: 11), 12);
        var b = Draw(new PromptSampler(Maths(20), 4, seed: 11), 12);
        var c = Draw(new PromptSampler(Maths(20), 4, seed: 12), 12);

        Assert.That(b, Is.EqualTo(a));
        Assert.That(c, Is.Not.EqualTo(a));
    }

    [Test]
    public void DropLastLeavesTheEpochTailUnusedAndWraps()
    {
        var sampler = new PromptSampler(Maths(10), batchSize: 3, seed: 1);
        var epoch0 = Indices(sampler.EpochOrder(0));
        var epoch1 = Indices(sampler.EpochOrder(1));

        Assert.That(sampler.BatchesPerEpoch, Is.EqualTo(3));
        var batches = Draw(sampler, 4);

        Assert.That(batches.Take(3).SelectMany(b => b), Is.EqualTo(epoch0.Take(9)));
        Assert.That(batches[3], Is.EqualTo(epoch1.Take(3)));
        Assert.That(batches.Take(3).SelectMany(b => b), Does.Not.Contain(epoch0[9]));
        Assert.That(sampler.Cursor, Is.EqualTo(new SamplerCursor(1, 3)));
    }

    [Test]
    public void CursorMovesToTheNextEpochWhenTheRestCannotFillABatch()
    {
        var sampler = new PromptSampler(Maths(10), batchSize: 3, seed: 1);
        Draw(sampler, 2);
        Assert.That(sampler.Cursor, Is.EqualTo(new SamplerCursor(0, 6)));
        Draw(sampler, 1);
        Assert.That(sampler.Cursor, Is.EqualTo(new SamplerCursor(1, 0)));
    }

    [Test]
    public void EveryEpochIsAPermutationAndEpochsDiffer()
    {
        var sampler = new PromptSampler(Maths(12), batchSize: 4, seed: 8);
        var epochs = Enumerable.Range(0, 3).Select(_ => Draw(sampler, 3).SelectMany(b => b).ToList()).ToList();

        foreach (var epoch in epochs) Assert.That(epoch, Is.EquivalentTo(Enumerable.Range(0, 12).Select(i => (long?)i)));
        Assert.That(epochs[1], Is.Not.EqualTo(epochs[0]));
        Assert.That(epochs[2], Is.Not.EqualTo(epochs[1]));
    }

    [Test]
    public void SavedStateRestoresTheIdenticalContinuation()
    {
        var original = new PromptSampler(Maths(17), batchSize: 4, seed: 99);
        Draw(original, 5);
        var state = original.SaveState();
        var continuation = Draw(original, 9);

        var resumed = new PromptSampler(Maths(17), batchSize: 4, seed: 99);
        resumed.RestoreState(state);

        Assert.That(resumed.Cursor, Is.EqualTo(new SamplerCursor(state.Epoch, state.Position)));
        Assert.That(Draw(resumed, 9), Is.EqualTo(continuation));
    }

    [Test]
    public void StateSurvivesJsonSerialisation()
    {
        var original = new PromptSampler(Maths(17), batchSize: 4, seed: ulong.MaxValue - 3);
        Draw(original, 6);
        string json = JsonSerializer.Serialize(original.SaveState());
        var continuation = Draw(original, 5);

        var resumed = new PromptSampler(Maths(17), batchSize: 4, seed: ulong.MaxValue - 3);
        resumed.RestoreState(JsonSerializer.Deserialize<SamplerState>(json)!);

        Assert.That(resumed.Count, Is.EqualTo(17));
        Assert.That(Draw(resumed, 5), Is.EqualTo(continuation));
    }

    [Test]
    public void RestoreRefusesAnotherSeedOrDataset()
    {
        var state = new PromptSampler(Maths(10), 2, seed: 1).SaveState();
        Assert.Throws<ArgumentException>(() => new PromptSampler(Maths(10), 2, seed: 2).RestoreState(state));
        Assert.Throws<ArgumentException>(() => new PromptSampler(Maths(11), 2, seed: 1).RestoreState(state));
        Assert.Throws<ArgumentException>(() => new PromptSampler(Maths(10), 2, seed: 1).RestoreState(state with { Position = 11 }));
    }

    [Test]
    public void RestoreWithALargerBatchSkipsATailTooShortForOneBatch()
    {
        var sampler = new PromptSampler(Maths(10), batchSize: 2, seed: 4);
        Draw(sampler, 4); // position 8 of epoch 0
        var bigger = new PromptSampler(Maths(10), batchSize: 3, seed: 4);
        bigger.RestoreState(sampler.SaveState());

        Assert.That(bigger.Cursor, Is.EqualTo(new SamplerCursor(1, 0)));
        Assert.That(Indices(bigger.NextBatch()), Is.EqualTo(Indices(bigger.EpochOrder(1)).Take(3)));
    }

    [Test]
    public void FewerExamplesThanABatchIsAClearError()
    {
        var sampler = new PromptSampler(Maths(2), batchSize: 3, seed: 0);
        var e = Assert.Throws<InvalidOperationException>(() => sampler.NextBatch());
        Assert.That(e!.Message, Does.Contain("only 2 remain"));
    }
}
