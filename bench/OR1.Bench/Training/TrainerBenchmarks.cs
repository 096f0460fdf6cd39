using BenchmarkDotNet.Attributes;
using OR1.Bench.Model;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Native.Cpu;

namespace OR1.Bench.Training;

/// <summary>
/// Whole trainer steps on the Cpu backend with <see cref="ModelBenchmarks.SmallConfig"/> (4 layers, hidden 256,
/// vocabulary 8192): a MAGIC update from 8 groups of 4 rollouts (prompts of 32 tokens, responses of 64-127, every
/// group with mixed rewards) with one and with two mini-batches (the second recomputes the old log-probs first),
/// and a supervised warm-up step on the same sequences. Everything the trainers do per step is inside: batching,
/// advantages, forward, log-probs, loss, backward, clipping, AdamW, metrics.
/// </summary>
[Config(typeof(TokenThroughputConfig))]
public class TrainerBenchmarks : ITokenThroughputBenchmark, IDisposable
{
    public const int Groups = 8, GroupSize = 4, PromptLength = 32;

    private CpuBackend _backend = null!;
    private Qwen2Model _model = null!;
    private MagicTrainer _magic = null!, _magicTwoMiniBatches = null!;
    private SupervisedTrainer _supervised = null!;
    private RolloutSample[] _samples = [];
    private SupervisedExample[] _examples = [];

    /// <summary>The synthetic rollouts: fixed lengths and tokens from a seed, rewards 1,0,1,0 in every group.</summary>
    public static RolloutSample[] Samples(int vocab)
    {
        var random = new Random(3);
        var samples = new List<RolloutSample>();
        for (int g = 0; g < Groups; g++)
        {
            int[] prompt = Enumerable.Range(0, PromptLength).Select(_ => random.Next(vocab)).ToArray();
            for (int s = 0; s < GroupSize; s++)
            {
                int[] response = Enumerable.Range(0, 64 + random.Next(64)).Select(_ => random.Next(vocab)).ToArray();
                samples.Add(new RolloutSample($"g{g}", prompt, response, s % 2, Truncated: false));
            }
        }
        return samples.ToArray();
    }

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        _model = new Qwen2Model(_backend, ModelBenchmarks.SmallConfig);
        _model.Weights.InitializeRandom(1);
        _samples = Samples(ModelBenchmarks.SmallConfig.VocabSize);
        _examples = _samples.Select(s => new SupervisedExample(s.PromptTokens, s.ResponseTokens)).ToArray();
        _magic = new MagicTrainer(_model, new MagicOptions { LearningRate = 1e-7, FixedEntropyCoefficient = 1e-3 });
        _magicTwoMiniBatches = new MagicTrainer(_model, new MagicOptions { LearningRate = 1e-7, FixedEntropyCoefficient = 1e-3, MiniBatches = 2 });
        _supervised = new SupervisedTrainer(_model);
    }

    /// <summary>One MAGIC update, one mini-batch (old log-probs from the training forward itself).</summary>
    [Benchmark]
    public StepMetrics MagicStep() => _magic.Step(_samples);

    /// <summary>One MAGIC update in two mini-batches (old log-probs computed by an extra forward first).</summary>
    [Benchmark]
    public StepMetrics MagicStepTwoMiniBatches() => _magicTwoMiniBatches.Step(_samples);

    /// <summary>One supervised step on the same sequences (response-only cross-entropy).</summary>
    [Benchmark]
    public double SupervisedStep() => _supervised.Step(_examples, 1e-7);

    public long Tokens(string method) => Samples(ModelBenchmarks.SmallConfig.VocabSize).Sum(s => (long)s.PromptTokens.Count + s.ResponseTokens.Count);

    [GlobalCleanup]
    public void Dispose()
    {
        _magic?.Dispose();
        _magicTwoMiniBatches?.Dispose();
        _supervised?.Dispose();
        _model?.Dispose();
        _backend?.Dispose();
        GC.SuppressFinalize(this);
    }
}
