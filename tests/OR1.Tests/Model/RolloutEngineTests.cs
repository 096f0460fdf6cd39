using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

/// <summary>
/// The rollout engine (<see cref="Qwen2Generator"/>): continuous batching, shared prefill, per-request random streams
/// and the inference arena, on every backend with a tiny random model.
/// </summary>
[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class RolloutEngineTests(BackendCase backendCase)
{
    private IBackend _backend = null!;

    [OneTimeSetUp]
    public void Create() => _backend = backendCase.CreateOrIgnore();

    [OneTimeTearDown]
    public void Destroy() => _backend?.Dispose();

    private Qwen2Model Model(int seed)
    {
        var model = new Qwen2Model(_backend, TinyModels.Config(tied: false));
        TinyModels.Randomize(model.Weights, seed);
        return model;
    }

    private static readonly IReadOnlyList<int>[] Prompts = [[1, 2, 3, 4, 5], [7, 8], [30], [4, 4, 9, 11, 2, 6, 13], [20, 21, 22]];

    /// <summary>Greedy continuation by full forwards (no cache, no batching): the argmax of the last position, token by token.</summary>
    private List<int> GreedyByFullForward(Qwen2Model model, IReadOnlyList<int> prompt, int newTokens)
    {
        var c = model.Config;
        var sequence = prompt.ToList();
        for (int step = 0; step < newTokens; step++)
        {
            using var batch = PackedBatch.Create(_backend, [sequence.ToArray()]);
            using var act = Qwen2Activations.ForInference(_backend, c, sequence.Count);
            var hidden = model.Forward(batch, act);
            using var logits = _backend.Allocate(DType.Float32, new TensorShape(sequence.Count, c.VocabSize));
            model.Logits(hidden, logits);
            var last = logits.ToFloats().AsSpan((sequence.Count - 1) * c.VocabSize, c.VocabSize);
            int best = 0;
            for (int j = 1; j < last.Length; j++)
                if (last[j] > last[best]) best = j;
            sequence.Add(best);
        }
        return sequence.Skip(prompt.Count).ToList();
    }

    /// <summary>
    /// Greedy decoding through the engine (3 slots for 10 requests: admissions while others decode, shared prefills,
    /// slots reused) gives the tokens of plain full forwards, for every sample of every prompt.
    /// </summary>
    [Test]
    public void GreedyDecodingMatchesFullForwardsWhateverTheBatching()
    {
        using var model = Model(700);
        using var generator = new Qwen2Generator(model, maxBatch: 3, maxLength: 20);
        var samples = generator.Generate(Prompts, new GenerationOptions(8, new SamplingOptions(0f), [], SamplesPerPrompt: 2, Seed: 1));
        Assert.That(samples, Has.Count.EqualTo(10));
        for (int p = 0; p < Prompts.Length; p++)
        {
            var expected = GreedyByFullForward(model, Prompts[p], 8);
            foreach (var s in samples.Where(s => s.PromptIndex == p))
                Assert.That(s.Tokens, Is.EqualTo(expected), $"prompt {p} sample {s.SampleIndex}: greedy tokens vs full forwards");
        }
    }

    /// <summary>
    /// A request's tokens do not depend on its batch: the same requests run one at a time (a batch of 1) and all at once
    /// (a batch of 32) draw the same tokens at temperature 1 with top-p, and the same log-probs.
    /// </summary>
    [Test]
    public void ARequestDrawsTheSameTokensAloneAsInABatchOf32()
    {
        using var model = Model(710);
        var options = new GenerationOptions(10, new SamplingOptions(1f, 0.95f), StopTokenIds: [0, 1, 2], SamplesPerPrompt: 6, Seed: 33);
        IReadOnlyList<GeneratedSample> alone, together;
        using (var one = new Qwen2Generator(model, maxBatch: 1, maxLength: 20)) alone = one.Generate(Prompts, options);
        using (var many = new Qwen2Generator(model, maxBatch: 32, maxLength: 20)) together = many.Generate(Prompts, options);
        Assert.That(together.Select(s => s.Tokens.Count).Distinct().Count(), Is.GreaterThan(1), "stop tokens end samples at different steps");
        for (int i = 0; i < alone.Count; i++)
        {
            Assert.That(together[i].Tokens, Is.EqualTo(alone[i].Tokens), $"request {i}: tokens alone vs in a batch of 32");
            TensorAssert.Close(together[i].LogProbs.ToArray(), alone[i].LogProbs.ToArray(), 1e-5, 1e-5, $"request {i}: log-probs alone vs batched");
        }
    }

    /// <summary>
    /// A share of the prompts with their stream ids (a data-parallel rank's share: prompts 1 and 3 of 5, and 0, 2, 4)
    /// draws the tokens and log-probs those prompts' samples draw in the call over all five.
    /// </summary>
    [Test]
    public void APromptsStreamIdDrawsItsSamplesOfTheWholeBatch()
    {
        using var model = Model(715);
        var options = new GenerationOptions(10, new SamplingOptions(1f, 0.95f), StopTokenIds: [0, 1, 2], SamplesPerPrompt: 3, Seed: 34);
        using var generator = new Qwen2Generator(model, maxBatch: 4, maxLength: 20);
        var whole = generator.Generate(Prompts, options);
        foreach (int[] share in new[] { new[] { 1, 3 }, new[] { 0, 2, 4 } })
        {
            var part = generator.Generate(share.Select(i => Prompts[i]).ToArray(), options with { PromptStreams = share });
            foreach (var sample in part)
            {
                var expected = whole.Single(s => s.PromptIndex == share[sample.PromptIndex] && s.SampleIndex == sample.SampleIndex);
                Assert.That(sample.Tokens, Is.EqualTo(expected.Tokens), $"prompt {share[sample.PromptIndex]} sample {sample.SampleIndex}: tokens in a share vs the whole batch");
                TensorAssert.Close(sample.LogProbs.ToArray(), expected.LogProbs.ToArray(), 1e-5, 1e-5, "log-probs in a share vs the whole batch");
            }
        }
        // Without the ids a share draws the streams of prompts 0, 1, ...: other tokens.
        var unmarked = generator.Generate([Prompts[1], Prompts[3]], options);
        Assert.That(unmarked.Select(s => s.Tokens), Is.Not.EqualTo(whole.Where(s => s.PromptIndex is 1 or 3).Select(s => s.Tokens)));
    }

    /// <summary>
    /// Continuous batching keeps every slot busy while requests wait (samples end at random steps on stop tokens), and a
    /// prompt admitted with several of its samples is prefilled once.
    /// </summary>
    [Test]
    public void TheDecodeBatchStaysFullWhileRequestsWait()
    {
        using var model = Model(720);
        // One step per wait for the device: a stopped row leaves at once (runs of several steps idle it until they end).
        using var generator = new Qwen2Generator(model, maxBatch: 4, maxLength: 24, decodeStepsPerSync: 1);
        var options = new GenerationOptions(12, new SamplingOptions(1f), StopTokenIds: [.. Enumerable.Range(0, 8)], SamplesPerPrompt: 4, Seed: 3);
        var reports = new List<GenerationProgress>();
        var samples = generator.Generate(Prompts, options, new SynchronousProgress<GenerationProgress>(reports.Add));
        var stats = generator.LastStats;
        TestContext.Out.WriteLine($"{stats}; occupancy {stats.MeanOccupancy:P1}, while queued {stats.MeanOccupancyWhileQueued:P1}");
        Assert.That(samples, Has.Count.EqualTo(20));
        Assert.That(stats.QueuedSteps, Is.GreaterThan(0), "requests waited (the assertion below can fail)");
        Assert.That(stats.MeanOccupancyWhileQueued, Is.EqualTo(1.0), "every decode step while requests wait runs MaxBatch rows");
        Assert.That(stats.DecodeTokens + samples.Count, Is.EqualTo(samples.Sum(s => s.Tokens.Count)), "each sample's first token comes from its prefill");
        Assert.That(reports[^1].Stats, Is.EqualTo(stats), "the last progress report carries the call's stats");
        Assert.That(reports[^1].FinishedSamples, Is.EqualTo(20));

        // Four samples per prompt and four slots: the first wave admits prompt 0's four requests and prefills it once.
        Assert.That(stats.PrefillTokens, Is.LessThan(Prompts.Sum(p => p.Count) * 4L), "a prompt's samples share prefills");
        Assert.That(stats.PrefillTokens, Is.GreaterThanOrEqualTo(Prompts.Sum(p => p.Count)), "every prompt is prefilled");
    }

    /// <summary>
    /// With one sample per prompt admitted per wave apart, prefill counts every prompt once; with every sample admitted
    /// together, once too: the prompt tokens prefilled equal the distinct prompts' tokens exactly.
    /// </summary>
    [Test]
    public void SamplesAdmittedTogetherShareOnePrefill()
    {
        using var model = Model(730);
        using var generator = new Qwen2Generator(model, maxBatch: 16, maxLength: 24);
        var samples = generator.Generate(Prompts[..3], new GenerationOptions(4, new SamplingOptions(1f), [], SamplesPerPrompt: 5, Seed: 8));
        Assert.That(samples, Has.Count.EqualTo(15));
        Assert.That(generator.LastStats.PrefillTokens, Is.EqualTo(Prompts[..3].Sum(p => p.Count)), "15 requests of 3 prompts: 3 prompts prefilled");
        Assert.That(generator.LastStats.Prefills, Is.EqualTo(1), "one packed prefill for the wave");
    }

    [Test]
    public void ThePrefillBudgetSplitsWavesButNotResults()
    {
        using var model = Model(740);
        var options = new GenerationOptions(6, new SamplingOptions(1f, TopK: 10), [], SamplesPerPrompt: 2, Seed: 4);
        IReadOnlyList<GeneratedSample> small, large;
        GenerationStats smallStats;
        using (var g = new Qwen2Generator(model, maxBatch: 8, maxLength: 20, prefillTokenBudget: 3))
        {
            small = g.Generate(Prompts, options);
            smallStats = g.LastStats;
        }
        using (var g = new Qwen2Generator(model, maxBatch: 8, maxLength: 20)) large = g.Generate(Prompts, options);
        TestContext.Out.WriteLine($"{smallStats}");
        Assert.That(smallStats.Prefills, Is.EqualTo(2), "a budget of 3 tokens prefills the short prompts (2, 1 and 3 tokens) in two waves");
        Assert.That(smallStats.PrefillChunks, Is.EqualTo(2 + 3), "the prompts of 5 and 7 tokens are chunked (2 and 3 chunks), once for their two samples");
        for (int i = 0; i < small.Count; i++) Assert.That(small[i].Tokens, Is.EqualTo(large[i].Tokens), $"request {i}");
    }

    /// <summary>
    /// Prompts longer than the prefill budget are prefilled in chunks run by the decode steps, beside running requests:
    /// prompts of 15, 16, 17 and 33 tokens with pages of 16 and a budget of 6 (chunks that cross pages, a page filled by
    /// the last chunk exactly, a partial last page each sample copies). Greedy tokens are those of full forwards for every
    /// sample; a chunked prompt is prefilled once for the samples admitted with it; every page is free at the end.
    /// </summary>
    [Test]
    public void LongPromptsArePrefilledInChunksBesideTheDecodeSteps()
    {
        using var model = Model(820);
        var random = new Random(820);
        IReadOnlyList<int>[] prompts = [.. new[] { 15, 16, 3, 17, 33 }.Select(n => (IReadOnlyList<int>)Enumerable.Range(0, n).Select(_ => random.Next(1, 37)).ToArray())];
        using var generator = new Qwen2Generator(model, maxBatch: 5, maxLength: 48, prefillTokenBudget: 6, pageSize: 16);
        var samples = generator.Generate(prompts, new GenerationOptions(8, new SamplingOptions(0f), [], SamplesPerPrompt: 2, Seed: 3));
        var stats = generator.LastStats;
        TestContext.Out.WriteLine($"{stats}");
        for (int p = 0; p < prompts.Length; p++)
        {
            var expected = GreedyByFullForward(model, prompts[p], 8);
            foreach (var s in samples.Where(s => s.PromptIndex == p))
                Assert.That(s.Tokens, Is.EqualTo(expected), $"prompt {p} ({prompts[p].Count} tokens) sample {s.SampleIndex}");
        }
        // 15 -> 3 chunks, 16 -> 3, 17 -> 3, 33 -> 6: each long prompt once for its two samples (admitted together).
        Assert.That(stats.PrefillChunks, Is.EqualTo(3 + 3 + 3 + 6));
        Assert.That(stats.Prefills, Is.InRange(1, 2), "the 3-token prompt in packed waves (its samples together or apart)");
        Assert.That(stats.PrefillTokens, Is.EqualTo(15 + 16 + 17 + 33 + 3 * stats.Prefills), "the long prompts' tokens prefilled once");
        Assert.That(stats.CachePagesInUse, Is.Zero, "every page is free again at the end");
        Assert.That(stats.DecodeSteps, Is.GreaterThan(0));
    }

    /// <summary>
    /// Chunked prefill under a tiny cache: running requests are pre-empted and come back through chunks of their prompt and
    /// tokens so far (sequences longer than the budget), and every response is the unlimited, unchunked engine's.
    /// </summary>
    [TestCase(0f)]
    [TestCase(1f)]
    public void PreemptedRequestsComeBackThroughChunks(float temperature)
    {
        using var model = Model(830);
        var options = new GenerationOptions(10, new SamplingOptions(temperature, 0.95f), [], SamplesPerPrompt: 2, Seed: 13);
        var prompts = Prompts[..4];
        IReadOnlyList<GeneratedSample> reference, chunked;
        using (var g = new Qwen2Generator(model, maxBatch: 8, maxLength: 20, pageSize: 4)) reference = g.Generate(prompts, options);
        using (var g = new Qwen2Generator(model, maxBatch: 8, maxLength: 20, prefillTokenBudget: 4, pageSize: 4, kvCacheBytes: 6 * PageBytes(model, 4)))
        {
            chunked = g.Generate(prompts, options);
            TestContext.Out.WriteLine($"{g.LastStats}");
            Assert.That(g.LastStats.Preemptions, Is.GreaterThan(0), "the budget forces pre-emptions");
            Assert.That(g.LastStats.PrefillChunks, Is.GreaterThan(0), "sequences over 4 tokens are chunked");
            Assert.That(g.LastStats.CachePagesInUse, Is.Zero);
        }
        for (int i = 0; i < reference.Count; i++)
        {
            Assert.That(chunked[i].Tokens, Is.EqualTo(reference[i].Tokens), $"request {i}: chunked and pre-empted vs whole prefills");
            TensorAssert.Close(chunked[i].LogProbs.ToArray(), reference[i].LogProbs.ToArray(), 1e-5, 1e-5, $"request {i}: log-probs");
        }
    }

    /// <summary>
    /// The long-tailed case in miniature: 64 requests at max batch 16, one in ten with a limit 8 times the others'.
    /// While requests wait every decode step is full; per-prompt limits end each sample where asked.
    /// </summary>
    [Test]
    public void ALongTailKeepsTheBatchFullUntilTheQueueIsEmpty()
    {
        using var model = Model(770);
        using var generator = new Qwen2Generator(model, maxBatch: 16, maxLength: 40, decodeStepsPerSync: 1);
        var prompts = Enumerable.Range(0, 64).Select(i => (IReadOnlyList<int>)new[] { 1 + i % 30, 2 + i % 7, 3 }).ToArray();
        var limits = Enumerable.Range(0, 64).Select(i => i % 10 == 7 ? 32 : 4).ToArray();
        var samples = generator.Generate(prompts, new GenerationOptions(32, new SamplingOptions(1f), [], Seed: 6, PromptMaxNewTokens: limits));
        var stats = generator.LastStats;
        TestContext.Out.WriteLine($"occupancy {stats.MeanOccupancy:P1} overall, {stats.MeanOccupancyWhileQueued:P1} while requests waited; {stats}");
        for (int i = 0; i < 64; i++)
        {
            Assert.That(samples[i].Tokens, Has.Count.EqualTo(limits[i]), $"request {i} stops at its own limit");
            Assert.That(samples[i].Truncated, Is.True);
        }
        Assert.That(stats.QueuedSteps, Is.GreaterThan(0));
        Assert.That(stats.MeanOccupancyWhileQueued, Is.GreaterThanOrEqualTo(0.9), "the issue's bar; the engine's rule gives 1");
        Assert.That(stats.MeanOccupancyWhileQueued, Is.EqualTo(1.0));
    }

    [Test]
    public void PerPromptLimitsAreChecked()
    {
        using var model = Model(780);
        using var generator = new Qwen2Generator(model, maxBatch: 2, maxLength: 12);
        var options = new GenerationOptions(4, new SamplingOptions(), []);
        Assert.That(() => generator.Generate([[1], [2]], options with { PromptMaxNewTokens = [4] }),
            Throws.ArgumentException.With.Message.Contains("1 limits for 2 prompts"));
        Assert.That(() => generator.Generate([[1], [2]], options with { PromptMaxNewTokens = [4, 5] }),
            Throws.ArgumentException.With.Message.Contains("PromptMaxNewTokens[1] is 5"));
        Assert.That(() => generator.Generate([[1], [2]], options with { PromptMaxNewTokens = [0, 1] }),
            Throws.ArgumentException.With.Message.Contains("PromptMaxNewTokens[0] is 0"));
    }

    /// <summary>
    /// Pages of 4 positions: prompts of 5 and 7 tokens share their full pages among their samples and copy the partial
    /// one; every decode step crosses page boundaries. Greedy tokens are still those of full forwards.
    /// </summary>
    [Test]
    public void SmallPagesGiveTheTokensOfFullForwards()
    {
        using var model = Model(790);
        using var generator = new Qwen2Generator(model, maxBatch: 4, maxLength: 20, pageSize: 4);
        var samples = generator.Generate(Prompts, new GenerationOptions(9, new SamplingOptions(0f), [], SamplesPerPrompt: 3, Seed: 2));
        for (int p = 0; p < Prompts.Length; p++)
        {
            var expected = GreedyByFullForward(model, Prompts[p], 9);
            foreach (var s in samples.Where(s => s.PromptIndex == p))
                Assert.That(s.Tokens, Is.EqualTo(expected), $"prompt {p} sample {s.SampleIndex} with pages of 4");
        }
    }

    /// <summary>
    /// A cache of 6 pages of 4 positions for 8 requests that each grow to 12-16 positions: running requests run out of
    /// pages, the newest are pre-empted and prefilled again later, and every response is the one an unlimited cache
    /// gives, token for token (greedy and sampled: the streams are the requests'), log-probs within rounding.
    /// </summary>
    [TestCase(0f)]
    [TestCase(1f)]
    public void PreemptionUnderATinyBudgetChangesNoResponse(float temperature)
    {
        using var model = Model(800);
        var options = new GenerationOptions(9, new SamplingOptions(temperature, 0.95f), [], SamplesPerPrompt: 2, Seed: 12);
        var prompts = Prompts[..4];
        IReadOnlyList<GeneratedSample> unlimited, tiny;
        using (var g = new Qwen2Generator(model, maxBatch: 8, maxLength: 20, pageSize: 4)) unlimited = g.Generate(prompts, options);
        using (var g = new Qwen2Generator(model, maxBatch: 8, maxLength: 20, pageSize: 4, kvCacheBytes: 6 * PageBytes(model, 4)))
        {
            Assert.That(g.CachePages, Is.EqualTo(6));
            tiny = g.Generate(prompts, options);
            TestContext.Out.WriteLine($"{g.LastStats}");
            Assert.That(g.LastStats.Preemptions, Is.GreaterThan(0), "the budget forces pre-emptions (the assertions below can fail)");
            Assert.That(g.LastStats.CachePages, Is.EqualTo(6), "the stats state the cache's size");
            Assert.That(g.LastStats.PeakCachePagesInUse, Is.EqualTo(6), "pre-emption happens only with every page in use");
            Assert.That(g.LastStats.CachePagesInUse, Is.Zero, "every page is free again at the end");
        }
        for (int i = 0; i < unlimited.Count; i++)
        {
            Assert.That(tiny[i].Tokens, Is.EqualTo(unlimited[i].Tokens), $"request {i}: tokens under a 6-page budget vs unlimited");
            TensorAssert.Close(tiny[i].LogProbs.ToArray(), unlimited[i].LogProbs.ToArray(), 1e-5, 1e-5, $"request {i}: log-probs");
        }
    }

    /// <summary>
    /// Decode steps replayed as device graphs (buckets of 1, 2, 4 and 6 rows, padding rows included) give the tokens of
    /// steps that launch their ops, and the log-probs and truncated masses within rounding (a padded step's decode may
    /// split its rows differently); on the kernel backends the graphs were captured and replayed, elsewhere not.
    /// </summary>
    [Test]
    public void DecodeGraphsChangeNoResponse()
    {
        using var model = Model(730);
        var options = new GenerationOptions(9, new SamplingOptions(1f, 0.9f), [3], SamplesPerPrompt: 3, Seed: 8);
        IReadOnlyList<GeneratedSample> launched, graphed;
        GenerationStats stats;
        using (var g = new Qwen2Generator(model, maxBatch: 6, maxLength: 20, deviceGraphs: false)) launched = g.Generate(Prompts, options);
        using (var g = new Qwen2Generator(model, maxBatch: 6, maxLength: 20))
        {
            Assert.That(g.DeviceGraphs, Is.True, "graphs are on by default");
            graphed = g.Generate(Prompts, options);
            stats = g.LastStats;
            // A second call captures its own graphs (they hold the call's seed and options) and gives the same again.
            var again = g.Generate(Prompts, options);
            for (int i = 0; i < graphed.Count; i++) Assert.That(again[i].Tokens, Is.EqualTo(graphed[i].Tokens), $"request {i}: a second call");
        }
        TestContext.Out.WriteLine($"{stats.DecodeGraphCaptures} graphs captured, {stats.DecodeGraphReplays} of {stats.DecodeSteps} steps replayed");
        for (int i = 0; i < launched.Count; i++)
        {
            Assert.That(graphed[i].Tokens, Is.EqualTo(launched[i].Tokens), $"request {i}: tokens with graphs vs launched ops");
            TensorAssert.Close(graphed[i].LogProbs.ToArray(), launched[i].LogProbs.ToArray(), 1e-5, 1e-5, $"request {i}: log-probs");
            TensorAssert.Close(graphed[i].TruncatedMass!.ToArray(), launched[i].TruncatedMass!.ToArray(), 1e-5, 1e-5, $"request {i}: truncated masses");
        }
        if (_backend is OR1.Native.Kernels.KernelBackend)
        {
            Assert.That(stats.DecodeGraphCaptures, Is.InRange(2, 8), "a graph per bucket met (1, 2, 4, 6 rows), recaptured only if scratch moved");
            Assert.That(stats.DecodeGraphReplays, Is.GreaterThan(stats.DecodeSteps / 2), "most steps are replays");
        }
        else Assert.That(stats.DecodeGraphCaptures + stats.DecodeGraphReplays, Is.Zero, "a backend without graphs launches every step");
    }

    /// <summary>
    /// Runs of several decode steps per wait for the device (the stop tokens and length limits applied on the device, each
    /// row's next inputs written there) give the responses of one step per wait: the same tokens, stops and truncation
    /// flags, the same log-probs (bit for bit on Cpu, where rows are batch-invariant; within rounding elsewhere), under
    /// stop tokens, per-prompt limits shorter and longer than a run, pre-emption and graphs.
    /// </summary>
    [TestCase(3)]
    [TestCase(5)]
    public void SeveralDecodeStepsPerWaitChangeNoResponse(int stepsPerSync)
    {
        using var model = Model(840);
        var limits = new[] { 2, 11, 7, 1, 9 };
        var options = new GenerationOptions(11, new SamplingOptions(1f, 0.9f), StopTokenIds: [3, 5, 8], SamplesPerPrompt: 3, Seed: 21, PromptMaxNewTokens: limits);
        IReadOnlyList<GeneratedSample> each, runs, tight;
        GenerationStats eachStats, runStats, tightStats;
        using (var g = new Qwen2Generator(model, maxBatch: 6, maxLength: 20, decodeStepsPerSync: 1))
        {
            each = g.Generate(Prompts, options);
            eachStats = g.LastStats;
        }
        using (var g = new Qwen2Generator(model, maxBatch: 6, maxLength: 20, decodeStepsPerSync: stepsPerSync))
        {
            Assert.That(g.DecodeStepsPerSync, Is.EqualTo(stepsPerSync));
            runs = g.Generate(Prompts, options);
            runStats = g.LastStats;
        }
        using (var g = new Qwen2Generator(model, maxBatch: 6, maxLength: 20, pageSize: 4, kvCacheBytes: 7 * PageBytes(model, 4), decodeStepsPerSync: stepsPerSync))
        {
            tight = g.Generate(Prompts, options);
            tightStats = g.LastStats;
        }
        TestContext.Out.WriteLine($"1 step per wait: {eachStats}");
        TestContext.Out.WriteLine($"{stepsPerSync} steps per wait: {runStats}");
        TestContext.Out.WriteLine($"under a 7-page cache: {tightStats}");
        Assert.That(eachStats.DecodeRuns, Is.EqualTo(eachStats.DecodeSteps), "one wait per step");
        Assert.That(runStats.DecodeRuns, Is.LessThan(runStats.DecodeSteps), "fewer waits than steps");
        Assert.That(tightStats.Preemptions, Is.GreaterThan(0), "the small cache pre-empts (the last comparison can fail)");
        foreach (var (other, what) in new[] { (runs, $"{stepsPerSync} steps per wait"), (tight, $"{stepsPerSync} steps per wait, pre-empted") })
            for (int i = 0; i < each.Count; i++)
            {
                Assert.That(other[i].Tokens, Is.EqualTo(each[i].Tokens), $"request {i}: tokens, {what}");
                Assert.That(other[i].Truncated, Is.EqualTo(each[i].Truncated), $"request {i}: truncated, {what}");
                Assert.That(other[i].LogProbs, Has.Count.EqualTo(each[i].Tokens.Count), $"request {i}: one log-prob per token, {what}");
                if (_backend is OR1.Native.Cpu.CpuBackend)
                    Assert.That(other[i].LogProbs, Is.EqualTo(each[i].LogProbs), $"request {i}: log-probs bit for bit, {what}");
                else TensorAssert.Close(other[i].LogProbs.ToArray(), each[i].LogProbs.ToArray(), 1e-5, 1e-5, $"request {i}: log-probs, {what}");
                TensorAssert.Close(other[i].TruncatedMass!.ToArray(), each[i].TruncatedMass!.ToArray(), 1e-5, 1e-5, $"request {i}: truncated masses, {what}");
            }
        // The rules held: a response ends at its first stop token, or is truncated at its prompt's limit.
        foreach (var s in each)
        {
            int stopAt = s.Tokens.ToList().FindIndex(t => t is 3 or 5 or 8);
            if (s.Truncated) Assert.That((stopAt, s.Tokens.Count), Is.EqualTo((-1, limits[s.PromptIndex])), $"prompt {s.PromptIndex} sample {s.SampleIndex}");
            else Assert.That(stopAt, Is.EqualTo(s.Tokens.Count - 1), $"prompt {s.PromptIndex} sample {s.SampleIndex} ends at its stop token");
        }
        Assert.That(each.Count(s => s.Truncated), Is.InRange(1, each.Count - 1), "some responses stopped at a token, some at their limit");
    }

    private static long PageBytes(Qwen2Model model, int pageSize) =>
        2L * model.Config.NumHiddenLayers * pageSize * model.Config.NumKeyValueHeads * model.Config.HeadDim * sizeof(float);

    [Test]
    public void ABudgetBelowOnePageOrTooSmallForARequestIsRefused()
    {
        using var model = Model(810);
        long page = PageBytes(model, 4);
        Assert.That(() => new Qwen2Generator(model, maxBatch: 2, maxLength: 20, pageSize: 4, kvCacheBytes: page - 1),
            Throws.ArgumentException.With.Message.Contains("smaller than one page").And.Message.Contains($"{page:N0} bytes"));
        using var small = new Qwen2Generator(model, maxBatch: 2, maxLength: 20, pageSize: 4, kvCacheBytes: 2 * page);
        Assert.That(() => small.Generate([[1, 2, 3, 4, 5]], new GenerationOptions(6, new SamplingOptions(), [])),
            Throws.ArgumentException.With.Message.Contains("needs 3 pages").And.Message.Contains("the KV cache's 2"));
    }

    [Test]
    public void BadRequestsAreRefusedBeforeAnythingRuns()
    {
        using var model = Model(750);
        using var generator = new Qwen2Generator(model, maxBatch: 2, maxLength: 8);
        var options = new GenerationOptions(3, new SamplingOptions(), []);
        Assert.That(() => generator.Generate([[1, 2], []], options), Throws.ArgumentException.With.Message.Contains("prompt 1 is empty"));
        Assert.That(() => generator.Generate([[1, 2]], options with { MaxNewTokens = 0 }), Throws.ArgumentException.With.Message.Contains("MaxNewTokens is 0"));
        Assert.That(() => generator.Generate([[1, 2]], options with { SamplesPerPrompt = 0 }), Throws.ArgumentException.With.Message.Contains("SamplesPerPrompt is 0"));
        Assert.That(() => generator.Generate([[1, 2, 3, 4, 5, 6]], options), Throws.ArgumentException.With.Message.Contains("maximum length 8"));
        Assert.That(() => generator.Generate([[1, 99]], options), Throws.ArgumentException.With.Message.Contains("token id 99 at position 1"));
        Assert.That(() => generator.Generate([[1, 2], [3]], options with { PromptStreams = [4] }), Throws.ArgumentException.With.Message.Contains("PromptStreams has 1 ids for 2 prompts"));
        Assert.That(() => generator.Generate([[1, 2], [3]], options with { PromptStreams = [4, 4] }), Throws.ArgumentException.With.Message.Contains("repeats an id"));
        Assert.That(() => generator.Generate([[1, 2]], options with { PromptStreams = [-1] }), Throws.ArgumentException.With.Message.Contains("PromptStreams holds ids from -1"));
        Assert.That(() => new Qwen2Generator(model, maxBatch: 0, maxLength: 8), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void TheInferenceArenaRefusesABackward()
    {
        using var model = Model(760);
        var c = model.Config;
        int[] tokens = [1, 2, 3];
        using var batch = PackedBatch.Create(_backend, [tokens]);
        using var act = Qwen2Activations.ForInference(_backend, c, tokens.Length);
        using var targets = _backend.Ints([2, 3, 0], 3);
        using var lp = _backend.Zeros(3);
        using var ent = _backend.Zeros(3);
        using var gradients = new Qwen2Weights(_backend, c);
        model.Forward(batch, act);
        model.LogProbs(act, targets, 1f, lp, ent);
        Assert.That(() => model.Backward(batch, act, targets, 1f, lp, null, ent, gradients),
            Throws.ArgumentException.With.Message.Contains("inference arena"));
    }
}
