using OR1.Model;
using OR1.Native.Cpu;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

/// <summary>The one batch shape of rollouts, evaluation samples and supervised examples, and its device buffers.</summary>
public sealed class ResponseBatchTests
{
    /// <summary>Group 0: prompt [1, 2] with responses [3, 4, 5] and []; group 1: prompt [6] with response [7, 8].</summary>
    private static ResponseBatch Small() => new ResponseBatch.Builder()
        .BeginGroup([1, 2]).AddResponse([3, 4, 5]).AddResponse([])
        .BeginGroup([6]).AddResponse([7, 8])
        .Build();

    [Test]
    public void PacksGroupsTargetsAndResponsePositions()
    {
        var batch = Small();
        Assert.Multiple(() =>
        {
            Assert.That(batch.Tokens.ToArray(), Is.EqualTo(new[] { 1, 2, 3, 4, 5, 1, 2, 6, 7, 8 }), "each response after its group's prompt");
            Assert.That(batch.SequenceOffsets.ToArray(), Is.EqualTo(new[] { 0, 5, 7, 10 }));
            Assert.That(batch.GroupOffsets.ToArray(), Is.EqualTo(new[] { 0, 2, 3 }));
            Assert.That((batch.SequenceCount, batch.GroupCount, batch.TokenCount, batch.ResponseTokenCount), Is.EqualTo((3, 2, 10, 5)));
            // Position p predicts token p + 1 of its sequence; the last position of each sequence predicts nothing (0).
            Assert.That(batch.Targets.ToArray(), Is.EqualTo(new[] { 2, 3, 4, 5, 0, 2, 0, 7, 8, 0 }));
            Assert.That(Enumerable.Range(0, 3).Select(batch.ResponseStart), Is.EqualTo(new[] { 1, 6, 7 }));
            Assert.That(batch.Response(0).ToArray(), Is.EqualTo(new[] { 3, 4, 5 }));
            Assert.That(batch.Response(1).ToArray(), Is.Empty);
            Assert.That(batch.Prompt(2).ToArray(), Is.EqualTo(new[] { 6 }));
            Assert.That((batch.GroupStart(1), batch.GroupSize(1)), Is.EqualTo((2, 1)));
        });
        for (int s = 0; s < batch.SequenceCount; s++)
            for (int j = 0; j < batch.ResponseLength(s); j++)
                Assert.That(batch.Targets[batch.ResponseStart(s) + j], Is.EqualTo(batch.Response(s)[j]), $"sequence {s} response token {j}");
    }

    [Test]
    public void SplitByTokens_PacksConsecutiveSequences_ALongOneAlone()
    {
        var batch = Small();
        Assert.That(batch.SplitByTokens(0, 3, 7).Select(r => (r.FirstSequence, r.SequenceCount)), Is.EqualTo(new[] { (0, 2), (2, 1) }));
        Assert.That(batch.SplitByTokens(0, 3, 4).Select(r => (r.FirstSequence, r.SequenceCount)), Is.EqualTo(new[] { (0, 1), (1, 1), (2, 1) }), "5 tokens > 4: alone");
        Assert.That(batch.SplitByTokens(1, 3, 100).Single(), Is.EqualTo(new SequenceRange(1, 2, 5, 5, 2)));
        Assert.That(batch.SplitByTokens(2, 2, 100), Is.Empty);
        Assert.That(() => batch.SplitByTokens(0, 4, 10), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(() => batch.SplitByTokens(0, 3, 0), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void SelectGroups_RepacksTheChosenGroupsInOrder()
    {
        var kept = Small().SelectGroups([1, 0]);
        Assert.That(kept.Tokens.ToArray(), Is.EqualTo(new[] { 6, 7, 8, 1, 2, 3, 4, 5, 1, 2 }));
        Assert.That(kept.GroupOffsets.ToArray(), Is.EqualTo(new[] { 0, 1, 3 }));
        Assert.That(Small().SelectGroups([]).SequenceCount, Is.Zero);
    }

    [Test]
    public void Builder_RefusesAnEmptyPromptAndAResponseWithoutAGroup()
    {
        Assert.That(() => new ResponseBatch.Builder().BeginGroup([]), Throws.ArgumentException.With.Message.Contains("prompt is empty"));
        Assert.That(() => new ResponseBatch.Builder().AddResponse([1]), Throws.InvalidOperationException);
        var batch = new ResponseBatch.Builder().BeginGroup([1]).BeginGroup([2]).AddResponse([3]).Build();
        Assert.That(batch.GroupCount, Is.EqualTo(1), "a group without responses is left out");
    }

    [Test]
    public void MicroBatchBuffers_UploadTheRangeAndAreReused()
    {
        using var backend = new CpuBackend(threads: 1);
        using var buffers = new MicroBatchBuffers(backend, vocabSize: 1000);
        var batch = Small();
        int capacity;
        using (var micro = buffers.Load(batch, batch.Range(0, 2)))
        {
            Assert.That(micro.Packed.Tokens.ToInts(), Is.EqualTo(new[] { 1, 2, 3, 4, 5, 1, 2 }));
            Assert.That(micro.Packed.Positions.ToInts(), Is.EqualTo(new[] { 0, 1, 2, 3, 4, 0, 1 }));
            Assert.That(micro.Targets.ToInts(), Is.EqualTo(new[] { 2, 3, 4, 5, 0, 2, 0 }));
            Assert.That(micro.Packed.Sequences.Offsets.ToArray(), Is.EqualTo(new[] { 0, 5, 7 }));
            Assert.That(micro.LogProbs.ElementCount, Is.EqualTo(7));
            capacity = buffers.Capacity;
        }
        using (var micro = buffers.Load(batch, batch.Range(2, 3)))
        {
            Assert.That(micro.Packed.Tokens.ToInts(), Is.EqualTo(new[] { 6, 7, 8 }));
            Assert.That(micro.Packed.Positions.ToInts(), Is.EqualTo(new[] { 0, 1, 2 }));
            Assert.That(micro.Targets.ToInts(), Is.EqualTo(new[] { 7, 8, 0 }));
        }
        Assert.That(buffers.Capacity, Is.EqualTo(capacity), "a smaller micro-batch reuses the buffers");
        using (var micro = buffers.Load(batch, batch.Range(0, 3))) Assert.That(micro.TokenCount, Is.EqualTo(10));
        Assert.That(buffers.Capacity, Is.GreaterThanOrEqualTo(10), "a larger one grows them");
    }
}
