using OR1.Grpo.Training;
using OR1.Model;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Distributed;
using OR1.Native.Ilgpu;
using OR1.Tests.Model;
using OR1.Tests.Support;

namespace OR1.Tests.Distributed;

/// <summary>
/// The paths that move a flat gradient longer than an Int32 (DeepSeek-R1-Distill-Qwen-7B's 7.6e9 elements, 32B's 4.1e9
/// slices on 8 ranks), proven at test size: the process's limits on one host collective call
/// (<see cref="TensorCollectives.HostCallElements"/>), on the host staging of device memory
/// (<see cref="TensorCollectives.StagingElements"/>) and on a checkpoint's gather (<see cref="AdamWOptimizer.GatherElements"/>)
/// are shrunk to a few dozen elements, so that a tiny model's flat buffer and slices take many calls, pieces that end in
/// the middle of a tensor and of a rank's slice, as a 7B model's do at the real limits. Several ranks are threads of this
/// process (<see cref="ThreadWorld"/>, whose sums run in rank order whatever the pieces): the results must be the bits
/// of the calls made whole.
/// </summary>
[NonParallelizable]
public sealed class LongFlatTests
{
    private int _host, _staging, _gather;

    [SetUp]
    public void Remember() => (_host, _staging, _gather) = (TensorCollectives.HostCallElements, TensorCollectives.StagingElements, AdamWOptimizer.GatherElements);

    [TearDown]
    public void Restore() => (TensorCollectives.HostCallElements, TensorCollectives.StagingElements, AdamWOptimizer.GatherElements) = (_host, _staging, _gather);

    private static IBackend Create(string device) => device == "cpu" ? new CpuBackend(threads: 1) : IlgpuBackend.CreateCpuSimulator();

    private static float[] Values(int rank, int count, int seed)
    {
        var random = new Random(seed + 97 * rank);
        return Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    private static void AssertBits(float[] actual, float[] expected, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        int differing = actual.Where((v, i) => BitConverter.SingleToInt32Bits(v) != BitConverter.SingleToInt32Bits(expected[i])).Count();
        Assert.That(differing, Is.Zero, $"{what}: {differing} of {expected.Length} values differ");
    }

    /// <summary>
    /// All-gather (rank-major: rank r's n elements at r x n, so a call for a piece of every rank's input scatters into
    /// the output), all-reduce and reduce of flat-shaped tensors ([rows, 64]) in calls of at most 7 elements in host memory
    /// (Cpu: in place) and 13 of staging (ILGPU's simulator: device memory the host cannot read), each piece in its place;
    /// sizes that differ between ranks are refused on every rank, naming both, where a rank with fewer pieces would
    /// otherwise wait for ever.
    /// </summary>
    [TestCase("cpu", 1)]
    [TestCase("cpu", 2)]
    [TestCase("cpu", 3)]
    [TestCase("ilgpu", 1)]
    [TestCase("ilgpu", 3)]
    public void LongTensorsMoveInPiecesEachToItsPlace(string device, int ranks)
    {
        TensorCollectives.HostCallElements = 7;
        TensorCollectives.StagingElements = 13;
        const int n = 3 * Qwen2Weights.FlatAlignment;
        var lengths = ThreadWorld.Run(ranks, world =>
        {
            using var backend = Create(device);
            var collectives = new TensorCollectives(backend, world);
            int rank = world.Rank;
            float[][] every = Enumerable.Range(0, ranks).Select(r => Values(r, n, 1)).ToArray();

            using var input = backend.Allocate(DType.Float32, Qwen2Weights.FlatShape(n), "slice");
            using var output = backend.Allocate(DType.Float32, Qwen2Weights.FlatShape((long)n * ranks), "flat");
            backend.Upload<float>(every[rank], input);
            collectives.AllGather(input, output);
            AssertBits(output.ToFloats(), every.SelectMany(v => v).ToArray(), $"rank {rank}: the gathered slices, in rank order");

            // The ranks' sums in rank order: what the world computes for each piece.
            var sum = (float[])every[0].Clone();
            for (int r = 1; r < ranks; r++)
                for (int i = 0; i < n; i++) sum[i] += every[r][i];
            using var buffer = backend.Allocate(DType.Float32, Qwen2Weights.FlatShape(n), "buffer");
            backend.Upload<float>(every[rank], buffer);
            collectives.AllReduceSum(buffer);
            AssertBits(buffer.ToFloats(), ranks == 1 ? every[0] : sum, $"rank {rank}: the all-reduced buffer");

            int root = ranks - 1;
            using var reduced = rank == root ? backend.Allocate(DType.Float32, Qwen2Weights.FlatShape(n), "reduced") : null;
            collectives.ReduceSum(input, reduced, root);
            if (reduced is not null) AssertBits(reduced.ToFloats(), sum, $"rank {rank}: the reduce's sum at the root");

            if (ranks > 1)
            {
                // Rank 0 one row short: 128 against 192 elements.
                using var uneven = backend.Allocate(DType.Float32, Qwen2Weights.FlatShape(rank == 0 ? n - 64 : n), "uneven");
                using var gathered = backend.Allocate(DType.Float32, Qwen2Weights.FlatShape(uneven.ElementCount * ranks), "uneven gathered");
                var e = Assert.Throws<CollectiveException>(() => collectives.AllGather(uneven, gathered))!;
                Assert.That(e.Message, Does.Contain($"rank {rank}").And.Contain("128").And.Contain("192"));
                var sumError = Assert.Throws<CollectiveException>(() => collectives.AllReduceSum(uneven))!;
                Assert.That(sumError.Message, Does.Contain("128").And.Contain("192"));
            }
            var wrong = Assert.Throws<CollectiveException>(() => collectives.AllGather(input, input.View(0, new TensorShape(n - 1))))!;
            Assert.That(wrong.Message, Does.Contain($"{n:N0}").And.Contain($"{n - 1:N0}"), "an output of the wrong size names both sizes");
        });
        int limit = device == "cpu" ? 7 : 13;
        for (int r = 0; r < ranks; r++)
        {
            Assert.That(lengths[r], Has.All.LessThanOrEqualTo(limit), $"rank {r}: every call within the limit");
            if (ranks > 1) Assert.That(lengths[r].Count, Is.GreaterThan(3 * n / limit), $"rank {r}: the tensors took many calls");
        }
    }

    /// <summary>
    /// Two steps of the sharded optimizer (ZeRO-1) over 2 and 3 ranks, fp32 and mixed precision (the master sharded too),
    /// with every collective and the checkpoint's gathers in pieces of at most 100 elements (the gathers' 300 over the
    /// ranks), take the steps of the same ranks whose calls are whole, bit for bit: the weights of every rank, the gathered
    /// fp32 parameters and moments, and the kept reduced gradient.
    /// </summary>
    [TestCase(2, Precision.Fp32)]
    [TestCase(3, Precision.Fp32)]
    [TestCase(3, Precision.Bf16)]
    public void TheShardedStepsInPiecesAreTheStepsWhole(int ranks, Precision precision)
    {
        if (precision != Precision.Fp32) EmuOrIgnore.Open(() => new OR1.Native.Emu.EmuBackend()).Dispose();
        var (whole, wholeCalls) = Steps(ranks, precision);
        Assert.That(wholeCalls.Max(), Is.GreaterThan(300), "whole: the flat buffer's gathers are one call each");
        TensorCollectives.HostCallElements = 100;
        TensorCollectives.StagingElements = 100;
        AdamWOptimizer.GatherElements = 300;
        var (pieces, pieceCalls) = Steps(ranks, precision);
        Assert.That(pieceCalls, Has.All.LessThanOrEqualTo(100), "in pieces: no call of more than 100 elements");
        Assert.That(pieceCalls.Count, Is.GreaterThan(2 * wholeCalls.Count), "in pieces: many more calls");
        for (int r = 0; r < ranks; r++)
        {
            foreach (var (what, i) in new[] { ("weights", 0), ("gathered fp32 parameters", 1), ("gathered exp_avg", 2), ("gathered exp_avg_sq", 3), ("reduced gradient", 4) })
            {
                AssertBits(pieces[r][i], whole[r][i], $"rank {r}: the {what}");
                AssertBits(pieces[r][i], pieces[0][i], $"rank {r}: the {what} against rank 0's");
            }
        }
    }

    /// <summary>Each rank's results (and the lengths of every rank's float collectives): its forward weights, then the gathered parameters, moments and reduced gradient, each every tensor's values in order.</summary>
    private static (float[][][] Results, List<int> Calls) Steps(int ranks, Precision precision)
    {
        var results = new float[ranks][][];
        var calls = ThreadWorld.Run(ranks, world =>
        {
            // Mixed precision on the emulator (the Cpu backend computes in fp32 only).
            using IBackend backend = precision == Precision.Fp32 ? new CpuBackend(threads: 1) : new OR1.Native.Emu.EmuBackend();
            var config = TinyModels.Config(tied: false, layers: 3);
            using var model = new Qwen2Model(backend, config, precision, master: true);
            TinyModels.Randomize(model.Parameters, 3);
            if (model.Master is not null) model.Weights.CopyFrom(model.Master);
            using var optimizer = new AdamWOptimizer(model, world, shard: true, bucketElements: 1000);
            Assert.That(optimizer.IsMasterSharded, Is.EqualTo(precision == Precision.Bf16));
            Assert.That(optimizer.FlatLength / ranks % Qwen2Weights.FlatAlignment, Is.Zero);
            var options = new AdamWOptions(1e-2, WeightDecay: 0.1);
            for (int step = 0; step < 2; step++)
            {
                optimizer.ZeroGradients();
                TinyModels.Randomize(optimizer.Gradients, 10 + step + 1000 * world.Rank);
                // The second step keeps the reduced gradient whole (the gradient slices all-gathered too).
                optimizer.KeepReducedGradients = step == 1;
                optimizer.Step(options, maxGradNorm: step == 1 ? 1e-3 : 1e9);
            }
            var parameters = optimizer.GatherParameters();
            var moments = optimizer.GatherMoments();
            var names = model.Weights.Named.Select(p => p.Name).ToArray();
            results[world.Rank] =
            [
                model.Weights.Named.SelectMany(p => model.Weights.ReadFloats(p.Tensor)).ToArray(),
                names.SelectMany(name => parameters(name)).ToArray(),
                moments.SelectMany(m => m.First).ToArray(),
                moments.SelectMany(m => m.Second).ToArray(),
                optimizer.ReducedGradients().SelectMany(g => g).ToArray(),
            ];
        });
        return (results, calls.SelectMany(c => c).ToList());
    }
}
