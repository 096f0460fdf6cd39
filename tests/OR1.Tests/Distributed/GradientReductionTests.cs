using OR1.Grpo.Training;
using OR1.Model;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Distributed;
using OR1.Tests.Model;
using OR1.Tests.Support;

namespace OR1.Tests.Distributed;

/// <summary>
/// The gradients' sum over the ranks, bucket by bucket (<see cref="GradientReduction"/>), in one process over a
/// <see cref="TwinWorld"/> (a second rank with the same gradients: every sum doubles). Overlapped with the backward, the
/// buckets run on a thread of their own, start before the backward ends, and give the same bits as the sum after the
/// backward, each bucket once (twice the unreduced gradient); a failing collective is rethrown by the step; sharded, each
/// bucket reaches its owner's slice only; plans that do not fit the buffer are refused. Multi-rank runs:
/// <see cref="MpiStepTests"/>.
/// </summary>
public sealed class GradientReductionTests
{
    private CpuBackend _backend = null!;

    [OneTimeSetUp]
    public void Create() => _backend = new CpuBackend(threads: 2);

    [OneTimeTearDown]
    public void Destroy() => _backend.Dispose();

    private const int Bucket = 64;

    private Qwen2Model Model()
    {
        var model = new Qwen2Model(_backend, TinyModels.Config(tied: false, layers: 3));
        model.InitializeRandom(11);
        return model;
    }

    /// <summary>Two micro-batches (the last reporting to the optimizer's hook, through <paramref name="wrap"/>), then the step.</summary>
    private static float TrainStep(Qwen2Model model, AdamWOptimizer optimizer, int seed, Func<Action<long>, Action<long>>? wrap = null)
    {
        optimizer.ZeroGradients();
        TinyBackward.Run(model, TinyBackward.MicroBatches[0], optimizer.Gradients, seed);
        var hook = optimizer.GradientsFinalFrom;
        TinyBackward.Run(model, TinyBackward.MicroBatches[1], optimizer.Gradients, seed + 10, hook is null || wrap is null ? hook : wrap(hook));
        return optimizer.Step(new AdamWOptions(1e-2, WeightDecay: 0.1), maxGradNorm: 1e9);
    }

    private static float[] Parameters(Qwen2Model model) => model.Parameters.Named.SelectMany(p => p.Tensor.ToFloats()).ToArray();

    /// <summary>Every tensor's values, one after another (ReducedGradients gives an array per tensor).</summary>
    private static float[] Whole(IEnumerable<float[]> tensors) => tensors.SelectMany(t => t).ToArray();

    private static void AssertBits(float[] actual, float[] expected, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        int differing = actual.Where((v, i) => BitConverter.SingleToInt32Bits(v) != BitConverter.SingleToInt32Bits(expected[i])).Count();
        Assert.That(differing, Is.Zero, $"{what}: {differing} of {expected.Length} values differ");
    }

    [Test]
    public void OverlappedBucketsRunOnTheirThreadAndSumAsAfterTheBackward()
    {
        using var overlappedModel = Model();
        using var afterModel = Model();
        using var aloneModel = Model();
        var overlappedWorld = new TwinWorld();
        var afterWorld = new TwinWorld();
        using var overlapped = new AdamWOptimizer(overlappedModel, overlappedWorld, overlapReduction: true, bucketElements: Bucket);
        using var after = new AdamWOptimizer(afterModel, afterWorld, overlapReduction: false, bucketElements: Bucket);
        using var alone = new AdamWOptimizer(aloneModel);
        Assert.That(overlapped.GradientSumTiming, Is.EqualTo(ReductionTiming.OverlappedOnThread));
        Assert.That(overlapped.GradientsFinalFrom, Is.Not.Null);
        Assert.That(overlapped.ReductionDescription, Does.Contain("overlapped with the backward by a thread of their own"));
        Assert.That(after.GradientSumTiming, Is.EqualTo(ReductionTiming.AfterBackward));
        Assert.That(after.GradientsFinalFrom, Is.Null, "nothing to report to when the sum runs after the backward");
        Assert.That(alone.GradientSumTiming, Is.Null, "one process: nothing to sum");

        for (int step = 0; step < 2; step++)
        {
            TrainStep(overlappedModel, overlapped, seed: 5 + step);
            TrainStep(afterModel, after, seed: 5 + step);
            // The world of one, its gradients doubled by hand: what a sum of each bucket once gives.
            alone.ZeroGradients();
            TinyBackward.Run(aloneModel, TinyBackward.MicroBatches[0], alone.Gradients, 5 + step);
            TinyBackward.Run(aloneModel, TinyBackward.MicroBatches[1], alone.Gradients, 15 + step);
            float[][] twice = alone.ReducedGradients().Select(t => t.Select(v => 2 * v).ToArray()).ToArray();
            for (int t = 0; t < twice.Length; t++) _backend.Upload<float>(twice[t], alone.Gradients.Named[t].Tensor);
            alone.Step(new AdamWOptions(1e-2, WeightDecay: 0.1), maxGradNorm: 1e9);

            AssertBits(Whole(overlapped.ReducedGradients()), Whole(after.ReducedGradients()), $"step {step}: the summed gradients, overlapped against after the backward");
            AssertBits(Whole(after.ReducedGradients()), Whole(twice), $"step {step}: the sum of two equal ranks, each bucket once");
            AssertBits(Parameters(overlappedModel), Parameters(afterModel), $"step {step}: the updated weights");
            AssertBits(Parameters(afterModel), Parameters(aloneModel), $"step {step}: the updated weights against one process's on the doubled gradient");
        }

        var plan = GradientBuckets.Plan(overlapped.FlatLength, 2, sharded: false, Bucket);
        Assert.That(plan, Has.Length.GreaterThan(20), "the tiny model spans many buckets (the test can see their order)");
        var expectedLengths = Enumerable.Repeat(plan.Select(b => b.Length), 2).SelectMany(x => x);
        Assert.That(overlappedWorld.Calls.Select(c => c.Length), Is.EqualTo(expectedLengths), "overlapped: every bucket once a step, in the plan's order");
        Assert.That(afterWorld.Calls.Select(c => c.Length), Is.EqualTo(expectedLengths), "after the backward: the same buckets in the same order");
        int test = Environment.CurrentManagedThreadId;
        Assert.That(overlappedWorld.Calls.Select(c => c.Thread).Distinct(), Has.None.EqualTo(test), "overlapped: the reduction thread calls the collectives");
        Assert.That(afterWorld.Calls.Select(c => c.Thread).Distinct(), Is.EqualTo(new[] { test }), "after the backward: the step's thread calls them");
    }

    [Test]
    public void TheFirstBucketsStartWhileTheBackwardRuns()
    {
        using var model = Model();
        using var started = new ManualResetEventSlim();
        bool backwardDone = false, startedBeforeTheEnd = false;
        var world = new TwinWorld
        {
            BeforeCall = calls =>
            {
                if (calls > 0) return;
                startedBeforeTheEnd = !Volatile.Read(ref backwardDone);
                started.Set();
            },
        };
        using var optimizer = new AdamWOptimizer(model, world, overlapReduction: true, bucketElements: Bucket);
        long head = optimizer.Gradients.HeadFlatStart;
        bool waited = false;
        TrainStep(model, optimizer, seed: 5, hook => offset =>
        {
            hook(offset);
            // After the LM head's report, hold the backward until a bucket has started (or 30 s have passed).
            if (offset == head) waited = started.Wait(TimeSpan.FromSeconds(30));
            if (offset == 0) Volatile.Write(ref backwardDone, true);
        });
        Assert.That(waited, Is.True, "a bucket of the LM head started before the backward of the layers below it");
        Assert.That(startedBeforeTheEnd, Is.True, "the first bucket started before the backward had reached the embedding");
    }

    [Test]
    public void AFailedCollectiveIsRethrownByTheStepAndTheNextStepStartsClean()
    {
        using var model = Model();
        bool fail = true;
        var world = new TwinWorld
        {
            BeforeCall = calls =>
            {
                if (fail && calls == 2) throw new CollectiveException("rank 0: all-reduce failed: the test's injected fault");
            },
        };
        using var optimizer = new AdamWOptimizer(model, world, overlapReduction: true, bucketElements: Bucket);
        float[] weights = Parameters(model);
        var e = Assert.Throws<CollectiveException>(() => TrainStep(model, optimizer, seed: 5));
        Assert.That(e!.Message, Does.Contain("injected fault"));
        Assert.That(optimizer.Steps, Is.Zero, "the update was not applied");
        AssertBits(Parameters(model), weights, "the weights after the failed step");

        fail = false;
        Assert.DoesNotThrow(() => TrainStep(model, optimizer, seed: 5), "a later step, its world healthy again");
        Assert.That(optimizer.Steps, Is.EqualTo(1));
    }

    [TestCase(true)]
    [TestCase(false)]
    public void ShardedEachBucketReachesItsOwnersSliceOnly(bool overlap)
    {
        const int length = 2 * 640;
        float[] values = TestData.Uniform(length, 3);
        using var flat = _backend.Floats(values, length);
        using var shard = _backend.Zeros(length / 2);
        var world = new TwinWorld();
        var plan = GradientBuckets.Plan(length, 2, sharded: true, Bucket);
        using var reduction = new GradientReduction(_backend, world, new TensorCollectives(_backend, world), flat, shard, plan, overlap: overlap);
        Assert.That(reduction.Timing, Is.EqualTo(overlap ? ReductionTiming.OverlappedOnThread : ReductionTiming.AfterBackward));
        foreach (long offset in new long[] { 1000, 700, 640, 300, 0 }) reduction.ReadyFrom(offset);
        reduction.Finish();
        AssertBits(shard.ToFloats(), values.Take(length / 2).Select(v => 2 * v).ToArray(), "rank 0's slice: the sum of its buckets");
        Assert.That(world.Calls.Select(c => (c.Length, c.Root)), Is.EqualTo(plan.Select(b => (b.Length, b.Owner))), "every bucket to its owner, in order");
        AssertBits(flat.ToFloats(), values, "the input is left as it was");
    }

    [Test]
    public void AWorldThatTakesOneThreadOnlySumsAfterTheBackwardEvenWhenAsked()
    {
        using var model = Model();
        using var optimizer = new AdamWOptimizer(model, new TwinWorld { AnyThread = false }, overlapReduction: true, bucketElements: Bucket);
        Assert.That(optimizer.GradientSumTiming, Is.EqualTo(ReductionTiming.AfterBackward), "MPI below MPI_THREAD_SERIALIZED: no thread of its own");
    }

    [Test]
    public void InHostMemoryTheSumRunsAfterTheBackwardUnlessAsked()
    {
        using var model = Model();
        using var optimizer = new AdamWOptimizer(model, new TwinWorld(), bucketElements: Bucket);
        Assert.That(optimizer.GradientSumTiming, Is.EqualTo(ReductionTiming.AfterBackward),
            "by default a thread of its own is not taken from the Cpu backend's cores (bench/grad-overlap.sh measured it slower)");
        Assert.That(optimizer.GradientsFinalFrom, Is.Null);
    }

    [Test]
    public void PlansThatDoNotFitTheBufferAreRefused()
    {
        using var flat = _backend.Zeros(256);
        using var shard = _backend.Zeros(128);
        using var wrongShard = _backend.Zeros(100);
        var world = new TwinWorld();
        var collectives = new TensorCollectives(_backend, world);
        void Refused(GradientBucket[] plan, Tensor? slice, string argument, string words)
        {
            var e = Assert.Throws<ArgumentException>(() => new GradientReduction(_backend, world, collectives, flat, slice, plan).Dispose());
            Assert.That(e!.ParamName, Is.EqualTo(argument));
            Assert.That(e.Message, Does.Contain(words));
        }
        Refused([new(128, 128, -1)], null, "plan", "leaves elements [0, 128)");
        Refused([new(128, 128, -1), new(0, 64, -1)], null, "plan", "bucket [0, 64)");
        Refused([new(0, 256, -1)], shard, "plan", "inside its owner's slice");
        Refused([new(64, 192, 1), new(0, 64, 0)], shard, "plan", "bucket [64, 256) of owner 1");
        Refused(GradientBuckets.Plan(256, 2, true, 64), wrongShard, "shard", "has 128");
    }
}
