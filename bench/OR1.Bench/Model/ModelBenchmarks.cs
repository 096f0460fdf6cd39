using BenchmarkDotNet.Attributes;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Bench.Model;

/// <summary>
/// Model-level throughput on the Cpu backend for the small config of the model issue: 4 layers, hidden
/// 256, 8 heads over 2 kv heads, intermediate 704, vocabulary 8192. Training: forward + log-probs +
/// backward + AdamW over 2048 tokens in 8 sequences of 256. Generation: 16 samples of 128 new tokens
/// after a 16-token prompt, with the KV cache.
/// </summary>
[Config(typeof(TokenThroughputConfig))]
public class ModelBenchmarks : ITokenThroughputBenchmark, IDisposable
{
    public const int SequenceLength = 256, Sequences = 8, GenerationBatch = 16, NewTokens = 128, PromptLength = 16;

    public static Qwen2Config SmallConfig => new()
    {
        HiddenSize = 256,
        IntermediateSize = 704,
        NumHiddenLayers = 4,
        NumAttentionHeads = 8,
        NumKeyValueHeads = 2,
        RmsNormEps = 1e-6,
        RopeTheta = 10000,
        VocabSize = 8192,
        MaxPositionEmbeddings = 4096,
        TieWordEmbeddings = true,
    };

    private CpuBackend _backend = null!;
    private Qwen2Model _model = null!;
    private Qwen2Weights _gradients = null!, _m = null!, _v = null!;
    private AdamWSlot[] _slots = [];
    private PackedBatch _batch = null!;
    private Qwen2Activations _activations = null!, _recomputing = null!;
    private Tensor _targets = null!, _logProbs = null!, _entropy = null!, _dLogProbs = null!;
    private Qwen2Generator _generator = null!;
    private IReadOnlyList<int>[] _prompts = [];
    private int _step;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        var config = SmallConfig;
        _model = new Qwen2Model(_backend, config);
        _model.Weights.InitializeRandom(1);
        _gradients = new Qwen2Weights(_backend, config);
        _m = new Qwen2Weights(_backend, config);
        _v = new Qwen2Weights(_backend, config);
        _slots = _model.Weights.Named.Select((p, i) => new AdamWSlot(p.Tensor, _gradients.Named[i].Tensor, _m.Named[i].Tensor, _v.Named[i].Tensor)).ToArray();
        var random = new Random(2);
        var sequences = Enumerable.Range(0, Sequences).Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, SequenceLength).Select(_ => random.Next(config.VocabSize)).ToArray()).ToArray();
        _batch = PackedBatch.Create(_backend, sequences);
        int t = _batch.TokenCount;
        _activations = new Qwen2Activations(_backend, config, t);
        _recomputing = new Qwen2Activations(_backend, config, t, DType.Float32, recompute: true);
        var targets = sequences.SelectMany(s => s).Skip(1).Append(0).ToArray();
        _targets = _backend.Allocate(DType.Int32, new TensorShape(t));
        _backend.Upload<int>(targets, _targets);
        _logProbs = _backend.Allocate(DType.Float32, new TensorShape(t));
        _entropy = _backend.Allocate(DType.Float32, new TensorShape(t));
        _dLogProbs = _backend.Allocate(DType.Float32, new TensorShape(t));
        _backend.Fill(_dLogProbs, -1f / t);
        _generator = new Qwen2Generator(_model, GenerationBatch, PromptLength + NewTokens);
        _prompts = Enumerable.Range(0, GenerationBatch).Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, PromptLength).Select(_ => random.Next(config.VocabSize)).ToArray()).ToArray();
    }

    /// <summary>One supervised training step: forward, log-probs, backward, AdamW.</summary>
    [Benchmark]
    public void TrainingStep() => Step(_activations);

    /// <summary>The same step with activation recomputation (each layer's forward again in the backward; same gradients).</summary>
    [Benchmark]
    public void TrainingStepRecompute() => Step(_recomputing);

    private void Step(Qwen2Activations activations)
    {
        _model.Forward(_batch, activations);
        _model.LogProbs(activations, _targets, 1f, _logProbs, _entropy);
        _gradients.Zero();
        _model.Backward(_batch, activations, _targets, 1f, _dLogProbs, null, _entropy, _gradients);
        _backend.AdamWStep(_slots, new AdamWOptions(1e-4), ++_step, 1f);
    }

    /// <summary>16 samples x 128 new tokens, no stop tokens.</summary>
    [Benchmark]
    public void Generation() =>
        _generator.Generate(_prompts, new GenerationOptions(NewTokens, new SamplingOptions(1f), [], 1, Seed: (ulong)++_step));

    public long Tokens(string method) => method.StartsWith(nameof(TrainingStep), StringComparison.Ordinal) ? (long)Sequences * SequenceLength : (long)GenerationBatch * NewTokens;

    [GlobalCleanup]
    public void Dispose()
    {
        _generator?.Dispose();
        _activations?.Dispose();
        _recomputing?.Dispose();
        _batch?.Dispose();
        foreach (var t in new[] { _targets, _logProbs, _entropy, _dLogProbs }) t?.Dispose();
        _gradients?.Dispose();
        _m?.Dispose();
        _v?.Dispose();
        _model?.Dispose();
        GC.SuppressFinalize(this);
    }
}
