using OR1.Grpo.Training;
using OR1.Model;
using OR1.Native;
using OR1.Native.Cuda;
using OR1.Native.Distributed;
using OR1.Tests.Model;
using OR1.Tests.Support;

namespace OR1.Tests.Training;

/// <summary>
/// The sharded optimizer's path (ZeRO-1: the flat gradient reduce-scattered, the clip's norm from the slice's partial sum,
/// the slice's master and moments updated, the weights all-gathered) in one process, on every backend: a world of one
/// with <c>shardAlone</c> takes that path with one slice, and must take the unsharded optimizer's steps. On the Cuda
/// backend the collectives go through a one-GPU NCCL communicator when NCCL is there (the GPU check's run of the
/// trainer's device path). Multi-rank runs are <see cref="Distributed.MpiStepTests"/>.
/// </summary>
[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class ShardedOptimizerTests(BackendCase backendCase)
{
    private IBackend _backend = null!;

    [OneTimeSetUp]
    public void Create() => _backend = backendCase.CreateOrIgnore();

    [OneTimeTearDown]
    public void Destroy() => _backend?.Dispose();

    /// <summary>The GPU communicator of a world of one on the Cuda backend, when NCCL loads (else null: staged through the host).</summary>
    private NcclCollectives? Nccl() =>
        _backend is CudaBackend cuda && NcclCollectives.Version(out _) is not null ? NcclCollectives.Create(cuda, SingleProcess.Instance) : null;

    private static float[] Read(Qwen2Weights weights, int i) => weights.ReadFloats(weights.Named[i].Tensor);

    [TestCase(Precision.Fp32)]
    [TestCase(Precision.Bf16)]
    public void OneSliceTakesTheUnshardedSteps(Precision precision)
    {
        if (!_backend.StorageTypes.Contains(precision.StorageType())) Assert.Ignore($"the {_backend.Kind} backend computes in fp32 only");
        var config = TinyModels.Config(tied: false);
        using var wholeModel = new Qwen2Model(_backend, config, precision, master: true);
        using var shardedModel = new Qwen2Model(_backend, config, precision, master: true);
        foreach (var model in new[] { wholeModel, shardedModel })
        {
            TinyModels.Randomize(model.Parameters, 3);
            if (model.Master is not null) model.Weights.CopyFrom(model.Master);
        }
        using var nccl = Nccl();
        using var whole = new AdamWOptimizer(wholeModel);
        using var sharded = new AdamWOptimizer(shardedModel, SingleProcess.Instance, shard: true, nccl, shardAlone: true);
        Assert.That(sharded.IsSharded, Is.True);
        Assert.That(sharded.IsMasterSharded, Is.EqualTo(precision == Precision.Bf16), "mixed precision: the master is the optimizer's slice");
        if (precision == Precision.Bf16) Assert.That(shardedModel.Master, Is.Null, "the model's whole master was released");
        if (nccl is not null) Assert.That(sharded.CollectivesPath, Does.StartWith("nccl"));
        Assert.That(sharded.MomentBytes, Is.EqualTo(2 * sizeof(float) * sharded.FlatLength), "one slice: the whole flat layout's moments");

        var options = new AdamWOptions(1e-2, WeightDecay: 0.1);
        for (int step = 0; step < 3; step++)
        {
            foreach (var optimizer in new[] { whole, sharded })
            {
                TinyModels.Randomize(optimizer.Gradients, 10 + step);
                optimizer.Step(options, maxGradNorm: step == 1 ? 1e-3 : 1e9); // the middle step clips
            }
            Assert.That(sharded.LastClipScale, Is.EqualTo(whole.LastClipScale).Within(1e-6 * whole.LastClipScale), $"step {step}: the clip");
        }
        var parameters = sharded.GatherParameters();
        var moments = sharded.GatherMoments();
        var wholeMoments = whole.GatherMoments();
        for (int i = 0; i < wholeModel.Parameters.Named.Count; i++)
        {
            string name = wholeModel.Parameters.Named[i].Name;
            TensorAssert.Close(parameters(name), TestData.ToDouble(Read(wholeModel.Parameters, i)), 1e-6, 1e-5, $"fp32 parameter {name}");
            TensorAssert.Close(moments[i].First, TestData.ToDouble(wholeMoments[i].First), 1e-9, 1e-5, $"exp_avg of {name}");
            TensorAssert.Close(moments[i].Second, TestData.ToDouble(wholeMoments[i].Second), 1e-12, 1e-5, $"exp_avg_sq of {name}");
            // The forward's weights: the gathered fp32 values (rounded to bf16 in mixed precision), in place in the model.
            float[] working = Read(shardedModel.Weights, i), expected = Read(wholeModel.Weights, i);
            double tolerance = precision == Precision.Bf16 ? 1e-2 : 1e-5; // a bf16 rounding may fall either side of a tie
            TensorAssert.Close(working, TestData.ToDouble(expected), 1e-6, tolerance, $"working weight {name}");
        }
    }
}
