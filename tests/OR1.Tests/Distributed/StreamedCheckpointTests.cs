using OR1.Grpo.Checkpoints;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Emu;
using OR1.Tests.Model;
using OR1.Tests.Support;

namespace OR1.Tests.Distributed;

/// <summary>
/// A training checkpoint streamed from the optimizer into its files a piece at a time (what lets a 7B run save the 91 GB
/// of its fp32 weights and moments without a copy of them in memory): with the state sharded over ranks (threads of this
/// process, <see cref="ThreadWorld"/>), rank 0 writes and the others send the pieces of their slices as it reaches them
/// (<see cref="OptimizerCheckpoint.FollowWeights"/>, <see cref="OptimizerCheckpoint.FollowMoments"/>), through a host
/// buffer shrunk to 50 elements (<see cref="AdamWOptimizer.GatherElements"/>): pieces that end inside tensors and at the
/// slices' borders. The files are checked against values computed without the optimizer's gathers: after one unclipped
/// step from zero moments, exp_avg = (1 - beta1) g and exp_avg_sq = (1 - beta2) g^2 of the ranks' summed gradient g, and
/// the weights are the ones every rank's forward reads. A world of another size reads its slices back.
/// </summary>
[NonParallelizable]
public sealed class StreamedCheckpointTests
{
    private const int Buffer = 50;
    private int _gather;
    private string _dir = null!;

    [SetUp]
    public void Create()
    {
        _gather = AdamWOptimizer.GatherElements;
        AdamWOptimizer.GatherElements = Buffer;
        _dir = Directory.CreateTempSubdirectory("or1-streamed-checkpoint-").FullName;
    }

    [TearDown]
    public void Remove()
    {
        AdamWOptimizer.GatherElements = _gather;
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Cpu (host memory), ILGPU's simulator (device memory the host cannot read: every piece is copied down), or the emulator (mixed precision).</summary>
    private static IBackend Backend(string device) => device switch
    {
        "cpu" => new CpuBackend(threads: 1),
        "ilgpu-cpu" => OR1.Native.Ilgpu.IlgpuBackend.CreateCpuSimulator(),
        _ => new EmuBackend(),
    };

    private static Qwen2Config Config => TinyModels.Config(tied: false, layers: 3);

    [TestCase(1, "cpu", Precision.Fp32)]
    [TestCase(3, "cpu", Precision.Fp32)]
    [TestCase(2, "ilgpu-cpu", Precision.Fp32)]
    [TestCase(3, "emu", Precision.Bf16)]
    public void RankZeroWritesTheShardedStateAsTheFilesOfOneProcess(int ranks, string device, Precision precision)
    {
        if (device == "emu") EmuOrIgnore.Open(() => new EmuBackend()).Dispose();
        var gradients = new Dictionary<string, float[]>[ranks];
        var working = new Dictionary<string, float[]>();
        Dictionary<string, float[]> initial = null!;
        var buffers = new int[ranks];
        ThreadWorld.Run(ranks, world =>
        {
            using var backend = Backend(device);
            using var model = new Qwen2Model(backend, Config, precision, master: true);
            var start = TinyModels.Randomize(model.Parameters, 3);
            if (world.Rank == 0) initial = start;
            if (model.Master is not null) model.Weights.CopyFrom(model.Master);
            using var optimizer = new AdamWOptimizer(model, world, shard: ranks > 1);
            Assert.That(optimizer.IsMasterSharded, Is.EqualTo(ranks > 1 && precision == Precision.Bf16));
            gradients[world.Rank] = TinyModels.Randomize(optimizer.Gradients, 10 + 1000 * world.Rank);
            optimizer.Step(new AdamWOptions(1e-2, WeightDecay: 0.1), maxGradNorm: 1e9);
            if (world.Rank == 0)
            {
                OptimizerCheckpoint.WriteWeights(_dir, model.Config, optimizer, SafetensorsDType.F32);
                OptimizerCheckpoint.WriteMoments(_dir, optimizer);
                foreach (var (name, tensor) in model.Weights.Named) working[name] = model.Weights.ReadFloats(tensor);
            }
            else
            {
                OptimizerCheckpoint.FollowWeights(model.Config, optimizer);
                OptimizerCheckpoint.FollowMoments(optimizer);
            }
            buffers[world.Rank] = optimizer.StreamBufferLength;
        });
        Assert.That(buffers, Has.All.InRange(1, Buffer), "every rank moved the state through a buffer of at most 50 elements");
        Assert.That(Directory.GetFiles(_dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "config.json", "model.safetensors", OptimizerCheckpoint.FileName }),
            "the two files and the config, no temporary file left");

        using var weights = SafetensorsFile.Open(Path.Combine(_dir, Qwen2Checkpoint.WeightsFileName));
        using var moments = SafetensorsFile.Open(Path.Combine(_dir, OptimizerCheckpoint.FileName));
        foreach (var (name, _) in Qwen2Checkpoint.ParameterShapes(Config))
        {
            // The ranks' gradients summed in fp32 in rank order, as the world sums them (where they cancel, another order differs).
            var g = gradients[0][name].Select((_, i) => (double)gradients.Aggregate(0f, (sum, r) => sum + r[name][i])).ToArray();
            TensorAssert.Close(moments.ReadAsFloat32("exp_avg." + name), g.Select(v => 0.1 * v).ToArray(), 1e-9, 1e-6, $"exp_avg of {name}");
            TensorAssert.Close(moments.ReadAsFloat32("exp_avg_sq." + name), g.Select(v => 0.001 * v * v).ToArray(), 1e-12, 1e-5, $"exp_avg_sq of {name}");
            float[] saved = weights.ReadAsFloat32(name);
            // The fp32 values the forward reads (fp32), or whose bf16 rounding it reads (mixed precision).
            float[] forward = precision == Precision.Fp32 ? saved : saved.Select(v => (float)(BFloat16)v).ToArray();
            Assert.That(forward, Is.EqualTo(working[name]), $"{name}: the saved weights are those of the model after the step");
            Assert.That(saved, Is.Not.EqualTo(initial[name]), $"{name}: the step moved it");
        }

        // Read back by a world of another size (each rank its slice, in pieces), and by one process holding the whole.
        foreach (int readers in new[] { 2, 1 })
        {
            ThreadWorld.Run(readers, world =>
            {
                using var backend = new CpuBackend(threads: 1);
                using var model = new Qwen2Model(backend, Config, Precision.Fp32, master: true);
                using var optimizer = new AdamWOptimizer(model, world, shard: readers > 1);
                OptimizerCheckpoint.Load(_dir, optimizer);
                foreach (var (name, _, first, second) in optimizer.GatherMoments())
                {
                    Assert.That(first, Is.EqualTo(moments.ReadAsFloat32("exp_avg." + name)), $"{readers} rank(s), rank {world.Rank}: exp_avg of {name} read back");
                    Assert.That(second, Is.EqualTo(moments.ReadAsFloat32("exp_avg_sq." + name)), $"{readers} rank(s), rank {world.Rank}: exp_avg_sq of {name} read back");
                }
                Assert.That(optimizer.StreamBufferLength, Is.InRange(1, Buffer));
            });
        }
    }

    [Test]
    public void AMomentsFileWithoutATensorIsRefusedBeforeAnythingIsLoaded()
    {
        using var backend = new CpuBackend(threads: 1);
        using var model = new Qwen2Model(backend, Config, Precision.Fp32, master: true);
        using var optimizer = new AdamWOptimizer(model);
        var layout = optimizer.Gradients.Named.SelectMany(p => new[] { ("exp_avg." + p.Name, p.Tensor.Shape.ToArray()), ("exp_avg_sq." + p.Name, p.Tensor.Shape.ToArray()) })
            .Where(t => t.Item1 != "exp_avg_sq.model.norm.weight").ToArray();
        SafetensorsWriter.Write(Path.Combine(_dir, OptimizerCheckpoint.FileName), layout, (name, sink) =>
            sink(Enumerable.Repeat(1f, layout.Single(t => t.Item1 == name).Item2.Aggregate(1, (a, b) => a * b)).ToArray()));
        var error = Assert.Throws<ModelFormatException>(() => OptimizerCheckpoint.Load(_dir, optimizer))!;
        Assert.That(error.Message, Does.Contain(OptimizerCheckpoint.FileName).And.Contain("exp_avg_sq.model.norm.weight").And.Contain("missing"));
        Assert.That(optimizer.GatherMoments().SelectMany(m => m.First), Has.All.EqualTo(0f), "no moment was loaded");
    }
}
