using OR1.Grpo.Rollout;
using OR1.Model;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Model;

namespace OR1.Tests.Distributed;

/// <summary>
/// The pieces data parallelism stands on, in one process: the flat gradient layout (<see cref="Qwen2Weights"/> with a flat
/// multiple) and the dealing of a step's prompts to the ranks.
/// </summary>
public sealed class FlatLayoutAndShareTests
{
    /// <summary>
    /// Every tensor of a flat layout is a view of one buffer, in checkpoint order, each starting at a multiple of 64
    /// elements after the end of the one before, the whole a multiple of the requested size; values written through the
    /// views stay apart, and Zero clears the buffer, gaps included. The static layout is the instance's.
    /// </summary>
    [TestCase(true, 1)]
    [TestCase(false, 3)]
    [TestCase(false, 8)]
    public void TheFlatLayoutIsAlignedAndDisjoint(bool tied, int ranks)
    {
        using var backend = new CpuBackend(); // no thread count: the pool is the process's, and other tests share it
        var config = TinyModels.Config(tied, layers: 3);
        int multiple = ranks * Qwen2Weights.FlatAlignment;
        using var weights = new Qwen2Weights(backend, config, flatMultiple: multiple);
        var flat = weights.Flat!;
        var (offsets, length) = Qwen2Weights.FlatLayout(config, multiple);
        Assert.That(flat.ElementCount, Is.EqualTo(length));
        Assert.That(flat.Shape, Is.EqualTo(new TensorShape((int)(length / Qwen2Weights.FlatAlignment), Qwen2Weights.FlatAlignment)), "rows of the alignment unit");
        Assert.That(length % multiple, Is.Zero);
        long end = 0;
        for (int i = 0; i < weights.Named.Count; i++)
        {
            var (name, tensor) = weights.Named[i];
            long offset = weights.FlatOffset(i);
            Assert.That(offset, Is.EqualTo(offsets[i]), name);
            Assert.That(offset % Qwen2Weights.FlatAlignment, Is.Zero, $"{name} starts on a 64-element boundary");
            Assert.That(offset, Is.InRange(end, end + Qwen2Weights.FlatAlignment - 1), $"{name} follows the tensor before it");
            Assert.That(tensor.DevicePointer, Is.EqualTo(flat.DevicePointer + (nint)(offset * sizeof(float))), $"{name} is a view of the flat buffer");
            end = offset + tensor.ElementCount;
            weights.Set(name, Enumerable.Repeat((float)(i + 1), (int)tensor.ElementCount).ToArray());
        }
        Assert.That(length - end, Is.InRange(0, multiple + Qwen2Weights.FlatAlignment), "the tail only rounds up");
        var values = flat.AsSpan<float>().ToArray();
        for (int i = 0; i < weights.Named.Count; i++)
            Assert.That(weights.ReadFloats(weights.Named[i].Tensor), Has.All.EqualTo((float)(i + 1)), $"{weights.Named[i].Name} kept its own values");
        Assert.That(values.Count(v => v != 0), Is.EqualTo(weights.ParameterCount), "the gaps and the tail stay zero");
        weights.Zero();
        Assert.That(flat.AsSpan<float>().ToArray(), Has.All.Zero);
        Assert.That(() => new Qwen2Weights(backend, config).FlatOffset(0), Throws.InvalidOperationException, "separate tensors have no flat offsets");
    }

    /// <summary>
    /// The flat layouts of DeepSeek-R1-Distill-Qwen-7B (7.6e9 elements) and 32B (32.8e9; 4.1e9 a slice on 8 ranks), longer
    /// than an Int32, are accepted on 1 to 512 ranks: the buffer and each slice are whole rows of 64 elements, fewer than
    /// Int32.MaxValue rows (this test allocates none of them). A layout of more rows than that is still refused, naming
    /// the limit, before anything is allocated.
    /// </summary>
    [Test]
    public void SevenBAndThirtyTwoBLayoutsAreWholeRowsAndOnlyMoreThanInt32RowsIsRefused()
    {
        foreach (string shape in new[] { "1.5b", "7b", "14b", "32b" })
        foreach (int ranks in new[] { 1, 2, 3, 8, 512 })
        {
            var config = OR1.Model.Planning.ModelShapes.Get(shape)!;
            var (_, length) = Qwen2Weights.FlatLayout(config, ranks * Qwen2Weights.FlatAlignment);
            Assert.That(length, Is.LessThanOrEqualTo(Qwen2Weights.MaxFlatLength), $"{shape} on {ranks} ranks");
            Assert.DoesNotThrow(() => Qwen2Weights.RequireFlatLength(length, "op", "arg"));
            var flat = Qwen2Weights.FlatShape(length);
            var slice = Qwen2Weights.FlatShape(length / ranks);
            Assert.That(flat.ElementCount, Is.EqualTo(length), $"{shape} on {ranks} ranks: the buffer's shape {flat}");
            Assert.That(slice.ElementCount * ranks, Is.EqualTo(length), $"{shape} on {ranks} ranks: the slices' shape {slice}");
            Assert.That(flat[1], Is.EqualTo(Qwen2Weights.FlatAlignment));
        }
        var (_, sevenB) = Qwen2Weights.FlatLayout(OR1.Model.Planning.ModelShapes.Get("7b")!, Qwen2Weights.FlatAlignment);
        Assert.That(sevenB, Is.GreaterThan(int.MaxValue), "7B's layout is past one Int32 dimension");
        var (_, thirtyTwo) = Qwen2Weights.FlatLayout(OR1.Model.Planning.ModelShapes.Get("32b")!, 8 * Qwen2Weights.FlatAlignment);
        Assert.That(thirtyTwo / 8, Is.GreaterThan(int.MaxValue), "32B's slice on 8 ranks is past one Int32 dimension");
        Assert.That(() => Qwen2Weights.FlatShape(100), Throws.ArgumentException.With.Message.Contain("not whole rows of 64"));

        // Five times 32B's layers: 1.6e11 elements, past Int32.MaxValue rows of 64.
        using var backend = new CpuBackend();
        var huge = OR1.Model.Planning.ModelShapes.Get("32b")! with { NumHiddenLayers = 320 };
        var (_, hugeLength) = Qwen2Weights.FlatLayout(huge, Qwen2Weights.FlatAlignment);
        Assert.That(hugeLength, Is.GreaterThan(Qwen2Weights.MaxFlatLength));
        var e = Assert.Throws<ArgumentException>(() => new Qwen2Weights(backend, huge, flatMultiple: Qwen2Weights.FlatAlignment))!;
        Assert.That(e.Message, Does.Contain("Qwen2Weights").And.Contain("'config'").And.Contain($"{hugeLength:N0}").And.Contain($"{Qwen2Weights.MaxFlatLength:N0}"));
        Assert.That(e.ParamName, Is.EqualTo("config"));
        Assert.That(backend.AllocatedBytes, Is.Zero, "refused before the flat buffer was allocated");
        Assert.That(() => new Qwen2Weights(backend, OR1.Model.Planning.ModelShapes.Get("1.5b")!, flatMultiple: 96),
            Throws.ArgumentException.With.Message.Contain("not a multiple of the 64-element rows"));
        Assert.That(backend.AllocatedBytes, Is.Zero);
    }

    /// <summary>Rank r generates prompts r, r + N, ...: the ranks' shares partition the batch, in order, for any batch and world.</summary>
    [Test]
    public void ThePromptsOfTheRanksPartitionTheBatch()
    {
        foreach (int count in new[] { 0, 1, 5, 8, 13 })
        foreach (int world in new[] { 1, 2, 3, 8 })
        {
            var shares = Enumerable.Range(0, world).Select(r => RolloutExchange.PromptsOfRank(count, world, r)).ToArray();
            Assert.That(shares.SelectMany(s => s).Order(), Is.EqualTo(Enumerable.Range(0, count)), $"{count} prompts over {world} ranks");
            for (int r = 0; r < world; r++)
            {
                Assert.That(shares[r], Has.All.Matches<int>(i => i % world == r), $"rank {r} of {world}");
                Assert.That(shares[r], Is.Ordered, $"rank {r} of {world}");
            }
        }
        Assert.That(() => RolloutExchange.PromptsOfRank(4, 2, 2), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}
