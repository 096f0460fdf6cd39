using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

/// <summary>
/// On-policy means on-policy: on the Cpu backend in fp32 the log-prob the rollout engine returns for a sampled token is
/// bit-identical to the trainer's forward log-prob of the same sequence (<see cref="Qwen2Model.Forward"/> then
/// <see cref="Qwen2Model.LogProbs"/>), whatever shares its batch, where its row sits, whether its prefix came from a
/// shared prefill, a recomputation after pre-emption or pages of the cache, and whether its row's decode attention was
/// split across threads. Compared with == on the float bits.
/// </summary>
public sealed class OnPolicyLogProbTests
{
    private CpuBackend _backend = null!;

    [OneTimeSetUp]
    public void Create() => _backend = new CpuBackend();

    [OneTimeTearDown]
    public void Destroy() => _backend?.Dispose();

    /// <summary>
    /// Head dim 32 (whole vectors), 3 query heads per kv head, a vocabulary of several of the log-prob fold's parts,
    /// and room for sequences over 512 positions, so attention runs several key blocks and several split chunks.
    /// </summary>
    private static Qwen2Config Config(int vocab) => new()
    {
        HiddenSize = 192,
        IntermediateSize = 200,
        NumHiddenLayers = 2,
        NumAttentionHeads = 6,
        NumKeyValueHeads = 2,
        RmsNormEps = 1e-6,
        RopeTheta = 10000,
        VocabSize = vocab,
        MaxPositionEmbeddings = 1024,
        TieWordEmbeddings = false,
    };

    private Qwen2Model Model(int vocab, int seed)
    {
        var model = new Qwen2Model(_backend, Config(vocab));
        TinyModels.Randomize(model.Weights, seed);
        return model;
    }

    private static IReadOnlyList<int>[] RandomPrompts(int count, int minLength, int maxLength, int vocab, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, random.Next(minLength, maxLength + 1)).Select(_ => random.Next(vocab)).ToArray())
            .ToArray();
    }

    /// <summary>
    /// The trainer's log-probs of every sample's response tokens: one packed forward over all sequences (prompt +
    /// response), then the fused LM-head log-prob at the sampling temperature, as <c>MagicTrainer</c> computes them.
    /// </summary>
    private float[][] TrainerLogProbs(Qwen2Model model, IReadOnlyList<IReadOnlyList<int>> prompts, IReadOnlyList<GeneratedSample> samples, float temperature)
    {
        var sequences = samples.Select(s => (IReadOnlyList<int>)prompts[s.PromptIndex].Concat(s.Tokens).ToArray()).ToArray();
        int total = sequences.Sum(s => s.Count);
        var targets = new int[total];
        for (int i = 0, at = 0; i < sequences.Length; i++)
            for (int j = 0; j < sequences[i].Count; j++, at++) targets[at] = j + 1 < sequences[i].Count ? sequences[i][j + 1] : 0;
        using var batch = PackedBatch.Create(_backend, sequences);
        using var act = new Qwen2Activations(_backend, model.Config, total);
        using var targetTensor = _backend.Allocate(DType.Int32, new TensorShape(total));
        using var logProbs = _backend.Allocate(DType.Float32, new TensorShape(total));
        using var entropy = _backend.Allocate(DType.Float32, new TensorShape(total));
        _backend.Upload<int>(targets, targetTensor);
        model.Forward(batch, act);
        model.LogProbs(act, targetTensor, temperature == 0f ? 1f : temperature, logProbs, entropy);
        var all = logProbs.ToFloats();
        var result = new float[samples.Count][];
        for (int i = 0, at = 0; i < samples.Count; at += sequences[i].Count, i++)
        {
            int promptLength = prompts[samples[i].PromptIndex].Count;
            result[i] = all.AsSpan(at + promptLength - 1, samples[i].Tokens.Count).ToArray();
        }
        return result;
    }

    private static void AssertBitIdentical(IReadOnlyList<GeneratedSample> samples, float[][] trainer, string what)
    {
        int tokens = 0, differing = 0;
        double worst = 0;
        for (int i = 0; i < samples.Count; i++)
            for (int j = 0; j < samples[i].Tokens.Count; j++, tokens++)
            {
                float engine = samples[i].LogProbs[j], reference = trainer[i][j];
                if (BitConverter.SingleToInt32Bits(engine) != BitConverter.SingleToInt32Bits(reference))
                {
                    differing++;
                    worst = Math.Max(worst, Math.Abs((double)engine - reference));
                }
            }
        Assert.That(tokens, Is.GreaterThan(0));
        Assert.That(differing, Is.EqualTo(0), $"{what}: {differing} of {tokens} sampled tokens' engine log-probs differ from the trainer's (worst |diff| {worst:G3})");
    }

    /// <summary>
    /// Random prompts (shared by groups of samples), batches from 1 to 16 rows, pages of 16 and of 128 positions,
    /// temperatures 1 and 0.7 with top-p (the returned log-prob is still the full vocabulary's).
    /// </summary>
    [TestCase(1, 128, 1f, 1f, 0)]
    [TestCase(16, 16, 1f, 1f, 0)]
    [TestCase(5, 16, 0.7f, 0.9f, 0)]
    [TestCase(3, 128, 1f, 1f, 20)]
    public void EngineLogProbsAreTheTrainersBitForBit(int maxBatch, int pageSize, float temperature, float topP, int topK)
    {
        const int vocab = 5000;
        using var model = Model(vocab, 9100 + maxBatch);
        var prompts = RandomPrompts(4, 5, 300, vocab, 17 * maxBatch + pageSize);
        var options = new GenerationOptions(260, new SamplingOptions(temperature, topP, topK), StopTokenIds: [], SamplesPerPrompt: 3, Seed: 5);
        using var generator = new Qwen2Generator(model, maxBatch, maxLength: 600, pageSize: pageSize);
        var samples = generator.Generate(prompts, options);
        AssertBitIdentical(samples, TrainerLogProbs(model, prompts, samples, temperature), $"batch {maxBatch}, pages of {pageSize}, T = {temperature}");

        // The mass top-k/top-p cut from each draw comes back beside the full-vocabulary log-prob, and the stats average it.
        var masses = samples.SelectMany(s => s.TruncatedMass!).ToArray();
        Assert.That(masses, Has.Length.EqualTo(samples.Sum(s => s.Tokens.Count)));
        Assert.That(masses, Is.All.InRange(0f, 1f));
        Assert.That(generator.LastStats.MeanTruncatedMass, Is.EqualTo(masses.Average(m => (double)m)).Within(1e-9));
        if (topP < 1f || topK > 0) Assert.That(masses.Max(), Is.GreaterThan(0f), "a filter cuts mass from some draw");
        else Assert.That(masses, Is.All.Zero, "nothing is cut without a filter");
    }

    /// <summary>
    /// Prompts longer than the prefill budget are prefilled in chunks by decode steps (their positions attend through the
    /// page table like decode rows): the sampled log-probs are still the trainer's bits.
    /// </summary>
    [Test]
    public void ChunkedPrefillsKeepTheTrainersLogProbs()
    {
        const int vocab = 3000;
        using var model = Model(vocab, 9300);
        var prompts = RandomPrompts(4, 60, 300, vocab, 91);
        var options = new GenerationOptions(100, new SamplingOptions(1f), StopTokenIds: [], SamplesPerPrompt: 3, Seed: 7);
        using var generator = new Qwen2Generator(model, 5, 420, prefillTokenBudget: 70, pageSize: 16);
        var samples = generator.Generate(prompts, options);
        Assert.That(generator.LastStats.PrefillChunks, Is.GreaterThan(4), "prompts over 70 tokens are chunked");
        AssertBitIdentical(samples, TrainerLogProbs(model, prompts, samples, 1f), "chunked prefill");
    }

    /// <summary>A budget of a few pages pre-empts requests; their recomputed prefixes give the same bits.</summary>
    [Test]
    public void PreemptedAndRecomputedRequestsKeepTheTrainersLogProbs()
    {
        const int vocab = 3000;
        using var model = Model(vocab, 9200);
        var prompts = RandomPrompts(3, 20, 90, vocab, 77);
        var options = new GenerationOptions(120, new SamplingOptions(1f), StopTokenIds: [], SamplesPerPrompt: 4, Seed: 6);
        var c = model.Config;
        long pageBytes = 2L * c.NumHiddenLayers * 16 * c.NumKeyValueHeads * c.HeadDim * sizeof(float);
        using var generator = new Qwen2Generator(model, 6, 256, pageSize: 16, kvCacheBytes: 30 * pageBytes);
        var samples = generator.Generate(prompts, options);
        Assert.That(generator.LastStats.Preemptions, Is.GreaterThan(0), "the budget should force pre-emptions");
        AssertBitIdentical(samples, TrainerLogProbs(model, prompts, samples, 1f), "under pre-emption");
    }
}
