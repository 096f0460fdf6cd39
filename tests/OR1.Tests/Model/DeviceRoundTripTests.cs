using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;
using OR1.Native.Emu;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

/// <summary>
/// The hot paths' budgets of host round trips (docs/DESIGN.md, "No host round trip per op"), counted by the kernel
/// runtime on the Emu backend with a tiny model: a training micro-batch waits for the device at most twice and a
/// decode step at most once (to read the sampled tokens), and neither allocates device memory once warm. Also: token
/// ids from the host are checked on the host, before anything is uploaded.
/// </summary>
[Category("Emu")]
public sealed class DeviceRoundTripTests
{
    private EmuBackend _emu = null!;

    [OneTimeSetUp]
    public void Create()
    {
        _emu = EmuOrIgnore.Open(() => new EmuBackend());
    }

    [OneTimeTearDown]
    public void Destroy() => _emu?.Dispose();

    /// <summary>2 layers, head dim 16 (2 query heads over 1 kv head), vocabulary 97.</summary>
    private static readonly Qwen2Config Config = new()
    {
        HiddenSize = 32,
        IntermediateSize = 48,
        NumHiddenLayers = 2,
        NumAttentionHeads = 2,
        NumKeyValueHeads = 1,
        RmsNormEps = 1e-6,
        RopeTheta = 10000,
        VocabSize = 97,
        MaxPositionEmbeddings = 64,
        TieWordEmbeddings = false,
    };

    private Qwen2Model Model(Precision precision, bool master = false)
    {
        var model = new Qwen2Model(_emu, Config, precision, master);
        model.InitializeRandom(seed: 3, std: 0.08f);
        return model;
    }

    /// <summary>Two informative groups (five sequences) with the rollout engine's log-probs, so every metric path runs.</summary>
    private static RolloutSample[] Rollouts()
    {
        static RolloutSample S(string group, int[] prompt, int[] response, double reward) =>
            new(group, prompt, response, reward, Truncated: false, OldLogProbs: response.Select(t => -1.5f - t * 0.01f).ToArray());
        return
        [
            S("a", [1, 2, 3], [4, 5, 6], 1), S("a", [1, 2, 3], [7], 0), S("a", [1, 2, 3], [8, 9], 0),
            S("b", [10, 11], [12, 13, 14, 15], 0), S("b", [10, 11], [16, 17], 1),
        ];
    }

    private DeviceCounters Count(Action work)
    {
        var before = _emu.Counters;
        work();
        return _emu.Counters - before;
    }

    /// <summary>
    /// A MAGIC step over one micro-batch, and the same step split into five (one sequence each), after a warm-up step
    /// of each: the split step's extra cost per extra micro-batch is what a micro-batch costs.
    /// </summary>
    [TestCase(Precision.Fp32)]
    [TestCase(Precision.Bf16)]
    public void ATrainingMicroBatchWaitsAtMostTwiceAndAllocatesNothingAfterWarmUp(Precision precision)
    {
        using var model = Model(precision, master: true);
        var one = new MagicOptions { LearningRate = 1e-3, FixedEntropyCoefficient = 0.01, MicroBatchTokens = 1000 };
        var split = one with { MicroBatchTokens = 1 };
        const int splitMicroBatches = 5;
        using var trainer = new MagicTrainer(model, one);
        var rollouts = Rollouts();

        var warmUp = Count(() => trainer.Step(rollouts));
        trainer.Options = split;
        trainer.Step(rollouts);
        trainer.Options = one;
        StepMetrics metrics = null!;
        var step = Count(() => metrics = trainer.Step(rollouts));
        trainer.Options = split;
        var splitStep = Count(() => trainer.Step(rollouts));
        var perMicroBatch = new DeviceCounters(
            (splitStep.Launches - step.Launches) / (splitMicroBatches - 1),
            (splitStep.Gemms - step.Gemms) / (splitMicroBatches - 1),
            (splitStep.Synchronizations - step.Synchronizations) / (splitMicroBatches - 1),
            (splitStep.Allocations - step.Allocations) / (splitMicroBatches - 1),
            (splitStep.Frees - step.Frees) / (splitMicroBatches - 1),
            (splitStep.HostToDeviceCopies - step.HostToDeviceCopies) / (splitMicroBatches - 1),
            (splitStep.DeviceToHostCopies - step.DeviceToHostCopies) / (splitMicroBatches - 1));

        TestContext.Out.WriteLine($"{precision} first step (warm-up): {warmUp}");
        TestContext.Out.WriteLine($"{precision} step of one micro-batch ({metrics.KeptSequenceTokens} tokens): {step}");
        TestContext.Out.WriteLine($"{precision} step of {splitMicroBatches} micro-batches: {splitStep}");
        TestContext.Out.WriteLine($"{precision} each further micro-batch: {perMicroBatch}");
        Assert.That(metrics.Skipped, Is.False);
        Assert.That(metrics.SamplerLogProbDiffTokens, Is.EqualTo(12), "the sampler comparison ran over every response token");
        TestContext.Out.WriteLine($"log-prob tiling: {metrics.LogProbRowBlock} rows x {metrics.LogProbVocabChunk} columns, {metrics.LogProbScratchMib:F3} MiB");
        Assert.That(metrics.LogProbRowBlock, Is.InRange(1, metrics.KeptSequenceTokens), "the metrics state the log-prob's row block");
        Assert.That(metrics.LogProbVocabChunk, Is.GreaterThan(0), "and its vocabulary chunk");
        Assert.That(metrics.LogProbScratchMib, Is.GreaterThan(0), "and its peak scratch");
        Assert.That(warmUp.Allocations, Is.GreaterThan(0), "the counters see the warm-up's allocations (the assertions below can fail)");
        Assert.That(step.Allocations, Is.Zero, "a step of one micro-batch allocates nothing once warm");
        Assert.That(splitStep.Allocations, Is.Zero, "a step of five micro-batches allocates nothing once warm");
        Assert.That(splitStep.Frees, Is.Zero);
        Assert.That(step.Synchronizations, Is.LessThanOrEqualTo(2), "a whole step of one micro-batch, optimizer included, waits at most twice");
        Assert.That(perMicroBatch.Synchronizations, Is.LessThanOrEqualTo(2), "each further micro-batch waits at most twice");
        Assert.That(perMicroBatch.Launches, Is.GreaterThan(0), "the split step really ran more micro-batches");
    }

    /// <summary>A supervised step is one micro-batch: it waits for the gradient norm and for the loss, and allocates nothing once warm.</summary>
    [TestCase(Precision.Fp32)]
    [TestCase(Precision.Bf16)]
    public void ASupervisedStepWaitsAtMostTwiceAndAllocatesNothingAfterWarmUp(Precision precision)
    {
        using var model = Model(precision, master: true);
        using var trainer = new SupervisedTrainer(model);
        SupervisedExample[] examples = [new([1, 2, 3], [4, 5, 6, 7]), new([8, 9], [10, 11])];
        var warmUp = Count(() => trainer.Step(examples, 1e-3));
        double loss = 0;
        var step = Count(() => loss = trainer.Step(examples, 1e-3));
        TestContext.Out.WriteLine($"{precision} supervised warm-up step: {warmUp}");
        TestContext.Out.WriteLine($"{precision} supervised step: {step}");
        Assert.That(loss, Is.GreaterThan(0).And.Not.NaN);
        Assert.That(warmUp.Allocations, Is.GreaterThan(0));
        Assert.That(step.Allocations, Is.Zero, "a supervised step allocates nothing once warm");
        Assert.That(step.Synchronizations, Is.LessThanOrEqualTo(2), "a supervised step (one micro-batch) waits at most twice");
    }

    /// <summary>
    /// Decode runs seen through the progress report, which comes right after each run's emitted tokens are read: the
    /// counts between two reports are one run (embedding, layers, logits, sampling and the stop rules per step, then the
    /// tokens' download). One step per run: a wait per step; the whole response in one run: one wait for all its steps.
    /// </summary>
    [TestCase(Precision.Fp32, 1)]
    [TestCase(Precision.Bf16, 1)]
    [TestCase(Precision.Fp32, 5)]
    public void ADecodeRunWaitsOnceAndAllocatesNothing(Precision precision, int stepsPerSync)
    {
        using var model = Model(precision);
        using var generator = new Qwen2Generator(model, maxBatch: 4, maxLength: 16, decodeStepsPerSync: stepsPerSync);
        IReadOnlyList<int>[] prompts = [[1, 2, 3, 4, 5], [7, 8]];
        const int newTokens = 6;
        var options = new GenerationOptions(newTokens, new SamplingOptions(1f), StopTokenIds: [], SamplesPerPrompt: 2, Seed: 11);

        (DeviceCounters Whole, List<DeviceCounters> Reports) Generate(out IReadOnlyList<GeneratedSample> samples)
        {
            var reports = new List<DeviceCounters>();
            var before = _emu.Counters;
            samples = generator.Generate(prompts, options, new SynchronousProgress<GenerationProgress>(_ => reports.Add(_emu.Counters)));
            var after = _emu.Counters;
            var points = new List<DeviceCounters> { before };
            points.AddRange(reports);
            points.Add(after);
            return (after - before, points);
        }

        var (firstCall, firstPoints) = Generate(out _);
        var (secondCall, points) = Generate(out var samples);
        // No stop tokens: every sample runs to the limit, its first token from the prefill and the rest from decode steps.
        int runs = (newTokens - 1 + stepsPerSync - 1) / stepsPerSync;
        Assert.That(points, Has.Count.EqualTo(runs + 3), "a report after the prefill and after each decode run");
        Assert.That(generator.LastStats.DecodeRuns, Is.EqualTo(runs));
        Assert.That(generator.LastStats.DecodeSteps, Is.EqualTo(newTokens - 1));
        var prefill = points[1] - points[0];
        var decodeSteps = Enumerable.Range(2, runs).Select(i => points[i] - points[i - 1]).ToArray();
        var tail = points[^1] - points[^2];
        TestContext.Out.WriteLine($"{precision} first Generate call: {firstCall}");
        TestContext.Out.WriteLine($"{precision} prefill + first sampling of 4 samples: {prefill}");
        TestContext.Out.WriteLine($"{precision} one decode run of {Math.Min(stepsPerSync, newTokens - 1)} steps of 4 samples: {decodeSteps[0]}");
        TestContext.Out.WriteLine($"{precision} after the last step (the sampled log-probs): {tail}");
        TestContext.Out.WriteLine($"{precision} second Generate call: {secondCall}");

        Assert.That(samples.All(s => s.Tokens.Count == newTokens && s.LogProbs.Count == newTokens), "every token comes with its log-prob");
        Assert.That(samples.SelectMany(s => s.LogProbs).All(lp => lp <= 0 && float.IsFinite(lp)), "the log-probs are log-probabilities");
        Assert.That(firstCall.Allocations, Is.GreaterThan(0), "the counters see the first call's allocations (the assertions below can fail)");
        for (int i = 2; i < runs + 1; i++)
            Assert.That((firstPoints[i + 1] - firstPoints[i]).Allocations, Is.Zero, $"first call, decode run {i}: nothing allocated after the first run");
        Assert.That(secondCall.Allocations, Is.Zero, "a warm generator allocates nothing: not per prefill, not per step");
        foreach (var step in decodeSteps)
        {
            Assert.That(step.Synchronizations, Is.LessThanOrEqualTo(1), "a decode run waits only to read the emitted tokens and stop states");
            Assert.That(step.Allocations, Is.Zero);
        }
        Assert.That(tail.Synchronizations, Is.LessThanOrEqualTo(1), "the sampled log-probs come back in one copy, after the last step");
    }

    [Test]
    public void ABadTokenIdIsRefusedOnTheHostWithItsPositionAndValueBeforeAnyUpload()
    {
        var batch = new ResponseBatch.Builder().BeginGroup([1, 2, 3]).AddResponse([4, 5]).AddResponse([6, 97, 8]).Build();
        using var buffers = new MicroBatchBuffers(_emu, Config.VocabSize);
        var range = batch.Range(0, batch.SequenceCount);
        ArgumentException? error = null;
        var cost = Count(() => error = Assert.Throws<ArgumentException>(() => buffers.Load(batch, range)));
        // Sequence 1 starts at packed position 5; its prompt has 3 tokens, then 6, then 97 at position 5 + 4 = 9.
        Assert.That(error!.ParamName, Is.EqualTo("batch"));
        Assert.That(error.Message, Does.Contain("token id 97 at position 9").And.Contain("[0, 97)"));
        Assert.That(cost.HostToDeviceCopies + cost.Allocations + cost.Launches, Is.Zero, "nothing reached the device");

        var good = new ResponseBatch.Builder().BeginGroup([1, 2, 3]).AddResponse([4, 96]).Build();
        Assert.That(() => buffers.Load(good, good.Range(0, 1)), Throws.Nothing, "the last id of the vocabulary is fine");

        var negative = new ResponseBatch.Builder().BeginGroup([-1]).AddResponse([4]).Build();
        Assert.That(() => buffers.Load(negative, negative.Range(0, 1)),
            Throws.ArgumentException.With.Message.Contains("token id -1 at position 0"), "negative ids are refused");
    }

    [Test]
    public void TrainersAndTheGeneratorRefuseBadTokenIdsBeforeUploadingAnything()
    {
        using var model = Model(Precision.Fp32);
        using var magic = new MagicTrainer(model, new MagicOptions { MicroBatchTokens = 1000 });
        RolloutSample[] rollouts = [new("g", [1, 2], [3, 120], 1, false), new("g", [1, 2], [4], 0, false)];
        ArgumentException? error = null;
        var cost = Count(() => error = Assert.Throws<ArgumentException>(() => magic.Step(rollouts)));
        Assert.That(error!.Message, Does.Contain("group 'g'").And.Contain("token id 120 at position 3"));
        Assert.That(cost.HostToDeviceCopies + cost.Launches, Is.Zero, "the MAGIC step stopped before the device");

        using var supervised = new SupervisedTrainer(model);
        cost = Count(() => error = Assert.Throws<ArgumentException>(() => supervised.Step([new SupervisedExample([5, 6], [7, 8]), new SupervisedExample([9], [100])], 1e-3)));
        Assert.That(error!.Message, Does.Contain("token id 100 at position 5"));
        Assert.That(cost.HostToDeviceCopies + cost.Launches, Is.Zero, "the supervised step stopped before the device");

        using var generator = new Qwen2Generator(model, maxBatch: 2, maxLength: 16);
        cost = Count(() => error = Assert.Throws<ArgumentException>(() =>
            generator.Generate([[1, 2], [3, 4, 99]], new GenerationOptions(4, new SamplingOptions(1f), []))));
        Assert.That(error!.Message, Does.Contain("prompt 1 has token id 99 at position 2"));
        Assert.That(cost.HostToDeviceCopies + cost.Launches, Is.Zero, "generation stopped before the device");
    }

    [Test]
    public void SegmentsInCallerOwnedStorageUploadWithoutAllocatingAndLeaveTheStorageOnDispose()
    {
        using var storage = _emu.Allocate(DType.Int32, new TensorShape(8), "offset storage");
        DeviceCounters cost = default;
        cost = Count(() =>
        {
            using var first = Segments.FromLengths([3, 1, 4], storage);
            Assert.That(first.Offsets.ToArray(), Is.EqualTo(new[] { 0, 3, 4, 8 }));
            Assert.That(first.DeviceOffsets.ElementCount, Is.EqualTo(4));
        });
        Assert.That(cost.Allocations + cost.Frees, Is.Zero);
        Assert.That(cost.HostToDeviceCopies, Is.EqualTo(1));

        using var second = Segments.FromOffsets([0, 2, 2, 7], storage);
        var device = new int[4];
        _emu.Download<int>(second.DeviceOffsets, device);
        Assert.That(device, Is.EqualTo(new[] { 0, 2, 2, 7 }), "the storage outlived the first segments and holds the second's offsets");
        Assert.That(second.MaxLength, Is.EqualTo(5));

        Assert.That(() => Segments.FromLengths([1, 1, 1, 1, 1, 1, 1, 1], storage),
            Throws.ArgumentException.With.Message.Contains("cannot hold the 9 offsets").And.Property(nameof(ArgumentException.ParamName)).EqualTo("offsetStorage"));
    }
}
