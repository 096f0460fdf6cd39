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
/// <para>The same path with the sum overlapped with the backward (each bucket reduced into the slice as soon as the
/// backward reports it final: a thread of its own in host memory, NCCL on the side stream on a GPU) takes the steps of
/// the sum after the backward bit for bit: on a GPU, a bucket read before the ops that write it had run would differ.</para>
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

    [TestCase(Precision.Fp32)]
    [TestCase(Precision.Bf16)]
    public void TheOverlappedSumTakesTheStepsOfTheSumAfterTheBackward(Precision precision)
    {
        if (!_backend.StorageTypes.Contains(precision.StorageType())) Assert.Ignore($"the {_backend.Kind} backend computes in fp32 only");
        var config = TinyModels.Config(tied: false, layers: 3);
        var models = new[] { new Qwen2Model(_backend, config, precision, master: true), new Qwen2Model(_backend, config, precision, master: true) };
        using var overlappedModel = models[0];
        using var afterModel = models[1];
        foreach (var model in models)
        {
            TinyModels.Randomize(model.Parameters, 3);
            if (model.Master is not null) model.Weights.CopyFrom(model.Master);
        }
        using var nccl = Nccl();
        using var overlapped = new AdamWOptimizer(overlappedModel, SingleProcess.Instance, shard: true, nccl, shardAlone: true, overlapReduction: true, bucketElements: 64);
        using var after = new AdamWOptimizer(afterModel, SingleProcess.Instance, shard: true, nccl, shardAlone: true, overlapReduction: false, bucketElements: 64);
        var expected = nccl is not null ? ReductionTiming.OverlappedOnSideStream
            : _backend.Kind is BackendKind.Cpu or BackendKind.Emu ? ReductionTiming.OverlappedOnThread
            : ReductionTiming.AfterBackward; // device memory without NCCL: staged through the host after the backward
        TestContext.Out.WriteLine($"{_backend.Kind}: {overlapped.ReductionDescription}");
        Assert.That(overlapped.GradientSumTiming, Is.EqualTo(expected));
        Assert.That(after.GradientSumTiming, Is.EqualTo(ReductionTiming.AfterBackward));

        var options = new AdamWOptions(1e-2, WeightDecay: 0.1);
        for (int step = 0; step < 3; step++)
        {
            foreach (var (model, optimizer) in new[] { (overlappedModel, overlapped), (afterModel, after) })
            {
                optimizer.ZeroGradients();
                TinyBackward.Run(model, TinyBackward.MicroBatches[0], optimizer.Gradients, seed: 20 + step);
                TinyBackward.Run(model, TinyBackward.MicroBatches[1], optimizer.Gradients, seed: 30 + step, optimizer.GradientsFinalFrom);
                optimizer.Step(options, maxGradNorm: step == 1 ? 1e-3 : 1e9);
            }
            Assert.That(overlapped.LastClipScale, Is.EqualTo(after.LastClipScale), $"step {step}: the clip");
        }
        var overlappedParameters = overlapped.GatherParameters();
        var afterParameters = after.GatherParameters();
        var overlappedMoments = overlapped.GatherMoments();
        var afterMoments = after.GatherMoments();
        for (int i = 0; i < afterMoments.Count; i++)
        {
            string name = afterMoments[i].Name;
            Assert.That(overlappedParameters(name), Is.EqualTo(afterParameters(name)), $"fp32 parameter {name}");
            Assert.That(overlappedMoments[i].First, Is.EqualTo(afterMoments[i].First), $"exp_avg of {name}");
            Assert.That(overlappedMoments[i].Second, Is.EqualTo(afterMoments[i].Second), $"exp_avg_sq of {name}");
        }
        Assert.That(afterMoments.Sum(m => m.Second.Count(v => v != 0)), Is.GreaterThan(afterMoments.Sum(m => m.Second.Length) / 2), "the steps moved (the comparison can fail)");
    }
}
